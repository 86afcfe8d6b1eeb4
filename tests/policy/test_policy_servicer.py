"""The pack as the engine drives it, minus the process: the SDK's own analyzer servicer gets gRPC
requests (protobuf Structs with secret and unknown encodings) and answers with diagnostics."""

from google.protobuf import json_format, struct_pb2
from pulumi.runtime import proto
from pulumi_policy import EnforcementLevel
from pulumi_policy.deserialize import SPECIAL_SECRET_SIG, SPECIAL_SIG_KEY
from pulumi_policy.policy import _PolicyAnalyzerServicer

from bluegreen.policies.rules import ALL_POLICIES, PACK_NAME, install_secret_markers
from policy_fakes import UNKNOWN, production_service, service_container


def _struct(value: dict) -> struct_pb2.Struct:
    return json_format.ParseDict(value, struct_pb2.Struct())


def servicer(config: dict | None = None) -> _PolicyAnalyzerServicer:
    install_secret_markers()
    server = _PolicyAnalyzerServicer(PACK_NAME, "0.1.0", ALL_POLICIES, EnforcementLevel.ADVISORY)
    if config:
        request = proto.ConfigureAnalyzerRequest()
        for name, properties in config.items():
            request.policyConfig[name].CopyFrom(proto.PolicyConfig(
                enforcementLevel=proto.MANDATORY, properties=_struct(properties)))
        server.Configure(request, None)
    return server


def analyze(server, res) -> list:
    return list(server.Analyze(proto.AnalyzeRequest(
        type=res["type"], properties=_struct(res["props"]), urn=res["urn"], name=res["name"]),
        None).diagnostics)


def analyze_stack(server, resources) -> list:
    request = proto.AnalyzeStackRequest()
    for r in resources:
        item = proto.AnalyzerResource(type=r["type"], properties=_struct(r["props"]), urn=r["urn"],
                                      name=r["name"], parent=r.get("parent") or "",
                                      dependencies=r.get("dependencies", []))
        for key, urns in r.get("property_dependencies", {}).items():
            item.propertyDependencies[key].urns.extend(urns)
        request.resources.append(item)
    return list(server.AnalyzeStack(request, None).diagnostics)


def test_analyzer_info_lists_every_policy_with_its_level():
    info = servicer().GetAnalyzerInfo(None, None)
    assert info.name == PACK_NAME
    levels = {p.name: p.enforcementLevel for p in info.policies}
    assert levels["service-image-pinned"] == proto.MANDATORY
    assert levels["dependency-image-pinned"] == proto.ADVISORY
    assert len(levels) == len(ALL_POLICIES)


def test_clean_service_container_gets_no_diagnostics():
    assert analyze(servicer(), service_container()) == []


def test_violations_carry_policy_level_and_fix():
    box = service_container(image="127.0.0.1:15000/vizconfig:1.0.0", restart="no")
    found = {d.policyName: d for d in analyze(servicer(), box)}
    assert set(found) == {"service-image-pinned", "container-restart-policy"}
    diagnostic = found["service-image-pinned"]
    assert diagnostic.enforcementLevel == proto.MANDATORY
    assert "not pinned by digest" in diagnostic.message and "ServiceImage" in diagnostic.message


def test_unknowns_during_preview_do_not_abort_policies():
    box = service_container(image=UNKNOWN, memory="3eeb2bf0-c639-47a8-9e75-3b44932eb421",
                            ports=[{"internal": 8000, "external": UNKNOWN}])
    # Without plain() the SDK would emit "can't run policy ... during preview" advisories.
    assert analyze(servicer(), box) == []


def test_secret_env_passes_and_plain_one_fails():
    secret = {SPECIAL_SIG_KEY: SPECIAL_SECRET_SIG, "value": "DB_PASSWORD=hunter2"}
    box = service_container(envs=["DB_ADDRESS=db:6379", secret])
    assert analyze(servicer(), box) == []
    box = service_container(envs=["DB_ADDRESS=db:6379", "DB_PASSWORD=hunter2"])
    [diagnostic] = analyze(servicer(), box)
    assert diagnostic.policyName == "no-plaintext-secrets"
    assert "hunter2" not in diagnostic.message


def test_policy_config_reaches_the_rules():
    box = service_container(image="registry.example:5000/vizconfig@sha256:" + "a" * 64)
    assert [d.policyName for d in analyze(servicer(), box)] == ["service-image-pinned"]
    configured = servicer({"service-image-pinned": {"registries": ["registry.example:5000"]}})
    assert analyze(configured, box) == []


def test_stack_analysis_of_a_deployed_service():
    assert analyze_stack(servicer(), production_service()) == []


def test_stack_violations_name_the_resource():
    resources = production_service(colours=("blue",))
    alias = next(r for r in resources if r["name"].endswith("-alias-key"))
    alias["dependencies"], alias["property_dependencies"] = [], {}
    found = {d.policyName: d for d in analyze_stack(servicer(), resources)}
    assert set(found) == {"alias-depends-on-gate", "production-keeps-both-colours"}
    assert found["alias-depends-on-gate"].urn == alias["urn"]
    retired = servicer({"production-keeps-both-colours": {"retired": ["production/vizconfig/green"]}})
    assert [d.policyName for d in analyze_stack(retired, resources)] == ["alias-depends-on-gate"]
