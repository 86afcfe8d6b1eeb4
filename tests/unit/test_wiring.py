"""Wiring of the whole program under Pulumi mocks: which resource feeds which, how many there are,
who parents them, which provider (host) they use, and that invalid input registers nothing."""

import copy
import json
import os
import re

import pulumi
import pytest

from unit_harness import (
    PLATFORM_CREDENTIALS,
    ROOT,
    SECRET_SIG,
    fake_secret,
    is_secret,
    plain,
    CONTAINER,
    CONSUL_KEY,
    HEALTH_GATE,
    REGISTRATION,
    PROVIDER,
    REGISTRY_IMAGE,
    REMOTE_IMAGE,
    ProgramFailed,
    run_program,
    stack_config,
)
from bluegreen.components.naming import reserved_variables

ENV = "integration"
STACK = "integration"
REGISTRY = "127.0.0.1:15000"
DIGEST_REF = re.compile(r"^127\.0\.0\.1:15000/vizconfig@sha256:[0-9a-f]{64}$")

HOSTS = {
    "local": {"docker": "unix:///var/run/docker.sock", "consul": "http://127.0.0.1:18500",
              "address": "127.0.0.1", "consulSerfPort": 18301, "consulServerPort": 18300},
    "second": {"docker": "unix:///run/bluegreen/second/docker.sock", "consul": "http://127.0.0.1:28500",
               "address": "127.0.0.1", "consulSerfPort": 28301, "consulServerPort": 28300,
               "bridgeAddress": "172.31.250.1"},
}


def config(*, hosts=("local",), live="green", blue="1.0.0", green="2.0.0", replicas=None,
           green_env=None, **service):
    settings = {"manifest": "services/vizconfig/service.yaml", "live": live, **service}
    if blue:
        settings["blue"] = {"version": blue}
    if green:
        settings["green"] = {"version": green}
        if green_env:
            settings["green"]["env"] = green_env
    if replicas:
        settings["replicas"] = replicas
    return {
        "environment": ENV,
        "baseImage": "bluegreen/base:bookworm",
        "hosts": {name: copy.deepcopy(HOSTS[name]) for name in hosts},
        "platform": {
            "host": "local",
            "agents": [h for h in hosts if h != "local"],
            "consul": {"image": "bluegreen/consul:1.16.3"},
            "registry": {"image": "bluegreen/registry:2.8", "port": 15000},
            "proxy": {"image": "bluegreen/proxy:0.45.0", "port": 18080},
        },
        "services": {"vizconfig": settings},
    }


def run(cfg):
    return Deployment(run_program(cfg, stack=STACK))


class Deployment:
    """Queries over the registered resources."""

    def __init__(self, resources):
        self.resources = resources
        self.by_urn = {r.urn: r for r in resources}
        assert len(self.by_urn) == len(resources), "two resources share a URN"

    def of_type(self, typ):
        return [r for r in self.resources if r.type == typ]

    def one(self, items):
        assert len(items) == 1, [r.name for r in items]
        return items[0]

    @property
    def containers(self):
        return self.of_type(CONTAINER)

    def role(self, role):
        return [c for c in self.containers if c.label("bluegreen.role") == role]

    @property
    def registrations(self):
        return self.of_type(REGISTRATION)

    @property
    def gates(self):
        return self.of_type(HEALTH_GATE)

    @property
    def keys(self):
        return self.of_type(CONSUL_KEY)

    def key(self, key):
        return self.one([r for r in self.keys if r.inputs["key"] == key])

    def gate(self, colour, environment=ENV):
        return self.one([g for g in self.gates if g.inputs["colour"] == colour
                         and g.inputs["environment"] == environment])

    @property
    def slots(self):
        return {r.name.rsplit("-", 1)[1]: r for r in self.of_type("bluegreen:service:ColourSlot")}

    def children(self, parent, typ=None):
        return [r for r in self.resources if r.parent == parent.urn and (typ is None or r.type == typ)]

    def provider_of_host(self, host):
        docker = HOSTS[host]["docker"]
        return self.one([p for p in self.of_type(PROVIDER) if p.inputs["host"] == docker])

    def host_of(self, container):
        instance = container.label("bluegreen.instance")
        colour = container.label("bluegreen.colour")
        return instance.removeprefix(f"{ENV}-vizconfig-{colour}-").rsplit("-", 1)[0]

    def push_of(self, reference_name):
        return self.one([r for r in self.of_type(REGISTRY_IMAGE) if r.inputs["name"] == reference_name])

    @property
    def builds(self):
        return [r for r in self.of_type(REMOTE_IMAGE) if r.inputs.get("build")]


@pytest.fixture(scope="module")
def one_host():
    return run(config())


@pytest.fixture(scope="module")
def two_hosts():
    return run(config(hosts=("local", "second"), replicas=2, green_env={"FEATURE": "on"}))


# --- the alias follows the live colour's gate ----------------------------------------------------

@pytest.mark.parametrize("live", ["blue", "green"])
def test_alias_depends_on_the_gate_of_the_live_colour_only(live):
    deployment = run(config(live=live))
    alias = deployment.key(f"bluegreen/aliases/{ENV}/vizconfig")
    live_gate = deployment.gate(live)
    other_gate = deployment.gate("green" if live == "blue" else "blue")
    assert live_gate.urn in alias.dependencies
    assert live_gate.urn in alias.property_dependencies["value"], "the value must come from the gate"
    assert other_gate.urn not in alias.all_dependencies
    assert alias.inputs["value"] == live
    assert live_gate.inputs["blocking"] is True
    assert other_gate.inputs["blocking"] is False


def test_the_alias_is_proven_on_the_health_path_under_the_proxys_stable_uri(one_host):
    alias = one_host.key(f"bluegreen/aliases/{ENV}/vizconfig")
    assert alias.inputs["urls"] == {"local": f"http://127.0.0.1:18080/{ENV}/vizconfig/health"}
    assert alias.inputs["route"] == f"{ENV}/vizconfig"
    # ...and checked at its preview URI before it moves.
    assert alias.inputs["preview_urls"] == {
        "local": f"http://127.0.0.1:18080/preview/{ENV}/vizconfig/health"}
    assert alias.inputs["preview_route"] == f"preview/{ENV}/vizconfig"
    proxy = one_host.one(one_host.role("proxy"))
    assert proxy.urn in alias.property_dependencies["urls"]


def test_gates_know_their_preview_uri_at_the_proxy(one_host):
    for colour in ("blue", "green"):
        gate = one_host.gate(colour)
        assert gate.inputs["preview_url"] == f"http://127.0.0.1:18080/preview/{ENV}/vizconfig/health"
        assert gate.inputs["preview_route"] == f"preview/{ENV}/vizconfig"


def test_the_proxys_drain_bound_is_written_to_kv_default_30s(one_host):
    assert one_host.key("bluegreen/proxy/drain-timeout").inputs["value"] == "30000ms"
    cfg = config()
    cfg["platform"]["proxy"]["drainTimeout"] = "8s"
    assert run(cfg).key("bluegreen/proxy/drain-timeout").inputs["value"] == "8000ms"


def test_alias_depends_on_the_gate_of_its_own_environment(one_host):
    alias = one_host.key(f"bluegreen/aliases/{ENV}/vizconfig")
    gates = [g for g in one_host.gates if g.urn in alias.all_dependencies]
    assert [(g.inputs["environment"], g.inputs["colour"]) for g in gates] == [(ENV, "green")]


def test_gate_waits_for_every_registration_of_its_colour_and_no_other(two_hosts):
    for colour, slot in two_hosts.slots.items():
        gate = two_hosts.gate(colour)
        own = {r.urn for r in two_hosts.registrations if r.parent == slot.urn}
        others = {r.urn for r in two_hosts.registrations} - own
        assert len(own) == 4
        assert own <= set(gate.dependencies)
        assert not others & gate.all_dependencies


def test_gate_asks_each_instance_at_its_own_hosts_agent(two_hosts):
    for colour, slot in two_hosts.slots.items():
        gate = two_hosts.gate(colour)
        expected = {c.label("bluegreen.instance"): HOSTS[two_hosts.host_of(c)]["consul"]
                    for c in two_hosts.children(slot, CONTAINER)}
        assert gate.inputs["instances"] == expected
        assert set(expected.values()) == {"http://127.0.0.1:18500", "http://127.0.0.1:28500"}


def test_gate_reruns_when_a_registration_changes(two_hosts):
    for colour in ("blue", "green"):
        gate = two_hosts.gate(colour)
        payloads = [r.inputs["payload"] for r in two_hosts.registrations
                    if r.inputs["payload"]["Tags"][1] == colour]
        assert sorted(p["ID"] for p in gate.inputs["revision"]["registrations"]) == \
            sorted(p["ID"] for p in payloads)


def test_registration_and_key_writes_go_to_a_running_agent(one_host):
    consul = one_host.one([c for c in one_host.containers if c.label("bluegreen.role") == "consul-server"])
    for resource in one_host.registrations + one_host.keys:
        assert consul.urn in resource.property_dependencies["address"], resource.name


# --- images by digest ----------------------------------------------------------------------------

def test_service_containers_run_the_pushed_digest_never_a_tag(two_hosts):
    containers = two_hosts.role("service")
    assert containers
    for container in containers:
        image = container.inputs["image"]
        assert DIGEST_REF.match(image), image
        version = container.label("bluegreen.version")
        push = two_hosts.push_of(f"{REGISTRY}/vizconfig:{version}")
        assert image == f"{REGISTRY}/vizconfig@{push.outputs['sha256Digest']}"


def test_colours_on_different_versions_run_different_digests(two_hosts):
    images = {c.label("bluegreen.colour"): c.inputs["image"] for c in two_hosts.role("service")}
    assert images["blue"] != images["green"]


def test_dependency_containers_run_a_pushed_digest_too(two_hosts):
    for container in two_hosts.role("dependency"):
        image = container.inputs["image"]
        assert re.fullmatch(r"127\.0\.0\.1:15000/vizconfig-db@sha256:[0-9a-f]{64}", image), image
        push = two_hosts.one([p for p in two_hosts.of_type(REGISTRY_IMAGE)
                              if p.inputs["name"].startswith(f"{REGISTRY}/vizconfig-db:")])
        assert image == f"{REGISTRY}/vizconfig-db@{push.outputs['sha256Digest']}"


def test_push_follows_the_build(two_hosts):
    for build in two_hosts.builds:
        push = two_hosts.push_of(build.inputs["name"])
        assert build.urn in push.all_dependencies
        assert push.inputs["triggers"]["image"] == build.outputs["imageId"]
        assert push.provider_urn == build.provider_urn == two_hosts.provider_of_host("local").urn


def test_builds_pass_version_and_base_image(two_hosts):
    service_builds = [b for b in two_hosts.builds if b.inputs["name"].startswith(f"{REGISTRY}/vizconfig:")]
    for build in service_builds:
        version = build.inputs["name"].rsplit(":", 1)[1]
        assert build.inputs["build"]["buildArgs"] == {"VERSION": version,
                                                      "BASE_IMAGE": "bluegreen/base:bookworm"}
        assert build.inputs["triggers"]["source"] == build.inputs["build"]["label"]["bluegreen.source"]


def test_a_failed_build_names_its_dockerfile_context_and_the_fix(monkeypatch):
    import unit_harness
    deployment = run(config(live="blue", green=None))
    logged = []
    monkeypatch.setattr(pulumi.log, "error", lambda message, *args, **kwargs: logged.append(message))
    service_dir = os.path.join(ROOT, "services", "vizconfig")
    for build in deployment.builds:
        assert len(build.error_hooks) == 1, build.name
        hook = unit_harness.CALLBACKS.error_hooks[build.error_hooks[0]]
        retry = hook(pulumi.ErrorHookArgs(
            urn=build.urn, id="", name=build.name, type=build.type, new_inputs=build.inputs,
            failed_operation="create",
            errors=["1 error occurred:\n\t* Error running buildx build: process \"/bin/sh -c false\" "
                    "did not complete successfully: exit code: 1\n\n"]))
        assert retry is False
    service, dependency = sorted(logged, key=lambda m: "/db/" in m)
    assert service.startswith(f"building {REGISTRY}/vizconfig:1.0.0 from {service_dir}/Dockerfile "
                              f"(context {service_dir}) failed: Error running buildx build: process "
                              '"/bin/sh -c false" did not complete successfully: exit code: 1. '
                              "Fix the Dockerfile or the files it uses, then run `pulumi up` again")
    assert service.endswith(f"docker build -f {service_dir}/Dockerfile --build-arg BASE_IMAGE=bluegreen/base:bookworm "
                            f"--build-arg VERSION=1.0.0 {service_dir}")
    assert f"from {service_dir}/db/Dockerfile (context {service_dir}/db)" in dependency


def test_a_failed_image_delete_says_nothing_about_builds(monkeypatch):
    import unit_harness
    deployment = run(config())
    logged = []
    monkeypatch.setattr(pulumi.log, "error", lambda message, *args, **kwargs: logged.append(message))
    build = deployment.builds[0]
    hook = unit_harness.CALLBACKS.error_hooks[build.error_hooks[0]]
    assert hook(pulumi.ErrorHookArgs(urn=build.urn, id="x", name=build.name, type=build.type,
                                     failed_operation="delete", errors=["in use"])) is False
    assert logged == []


# --- registrations -------------------------------------------------------------------------------

def test_one_registration_per_container_tagged_with_environment_and_colour(two_hosts):
    containers = two_hosts.role("service")
    registrations = {r.inputs["payload"]["ID"]: r for r in two_hosts.registrations}
    assert len(registrations) == len(two_hosts.registrations) == len(containers) == 8
    for container in containers:
        instance = container.label("bluegreen.instance")
        registration = registrations[instance]
        payload = registration.inputs["payload"]
        host = two_hosts.host_of(container)
        port = container.outputs["ports"][0]["external"]
        assert payload["Tags"] == [ENV, container.label("bluegreen.colour")]
        assert payload["Port"] == port
        assert payload["Address"] == HOSTS[host]["address"]
        assert payload["Check"]["HTTP"] == f"http://{HOSTS[host]['address']}:{int(port)}/health"
        assert payload["Check"]["Interval"] == "1000ms"
        assert payload["Meta"]["image"] == container.inputs["image"]
        assert payload["Meta"]["version"] == container.label("bluegreen.version")
        assert registration.inputs["address"] == HOSTS[host]["consul"], "register with the host's own agent"
        assert container.urn in registration.property_dependencies["payload"]


def test_published_ports_are_distinct(two_hosts):
    ports = [c.outputs["ports"][0]["external"] for c in two_hosts.role("service")]
    assert len(set(ports)) == len(ports)
    assert {p["Port"] for p in (r.inputs["payload"] for r in two_hosts.registrations)} == set(ports)


# --- counts --------------------------------------------------------------------------------------

def test_counts_per_colour_slot_with_two_hosts_and_two_replicas(two_hosts):
    assert set(two_hosts.slots) == {"blue", "green"}
    for slot in two_hosts.slots.values():
        containers = two_hosts.children(slot, CONTAINER)
        registrations = [r for r in two_hosts.registrations if r.parent == slot.urn]
        gates = [g for g in two_hosts.gates if g.parent == slot.urn]
        pulls = two_hosts.children(slot, REMOTE_IMAGE)
        assert len(containers) == 4
        assert len(registrations) == 4
        assert len(gates) == 1
        assert len(pulls) == 2
        for host in ("local", "second"):
            provider = two_hosts.provider_of_host(host).urn
            assert sum(p.provider_urn == provider for p in pulls) == 1
            assert sum(c.provider_urn == provider for c in containers) == 2


def test_one_dependency_container_and_network_per_host(two_hosts):
    for host in ("local", "second"):
        provider = two_hosts.provider_of_host(host).urn
        db = [c for c in two_hosts.role("dependency") if c.provider_urn == provider]
        assert len(db) == 1
        assert db[0].inputs["networksAdvanced"][0]["aliases"] == ["db"]
        networks = [n for n in two_hosts.of_type("docker:index/network:Network") if n.provider_urn == provider]
        assert len(networks) == 1
        service = [c for c in two_hosts.role("service") if c.provider_urn == provider]
        # Every container on a host joins that host's network, where `db` resolves.
        assert {c.inputs["networksAdvanced"][0]["name"] for c in service + db} == {networks[0].inputs["name"]}
    assert len(two_hosts.role("dependency")) == 2


def test_one_build_per_distinct_version(two_hosts):
    service_builds = [b for b in two_hosts.builds if b.inputs["name"].startswith(f"{REGISTRY}/vizconfig:")]
    assert sorted(b.inputs["name"] for b in service_builds) == \
        [f"{REGISTRY}/vizconfig:1.0.0", f"{REGISTRY}/vizconfig:2.0.0"]
    db_builds = [b for b in two_hosts.builds if b.inputs["name"].startswith(f"{REGISTRY}/vizconfig-db:")]
    assert len(db_builds) == 1
    assert len(two_hosts.of_type(REGISTRY_IMAGE)) == 3


def test_two_colours_on_the_same_version_share_one_build():
    deployment = run(config(hosts=("local", "second"), blue="3.1.0", green="3.1.0"))
    service_builds = [b for b in deployment.builds if b.inputs["name"].startswith(f"{REGISTRY}/vizconfig:")]
    assert [b.inputs["name"] for b in service_builds] == [f"{REGISTRY}/vizconfig:3.1.0"]
    images = {c.inputs["image"] for c in deployment.role("service")}
    assert len(images) == 1
    assert len(deployment.role("service")) == 4


def test_a_single_colour_deploys_one_slot():
    deployment = run(config(live="blue", green=None))
    assert set(deployment.slots) == {"blue"}
    assert len(deployment.gates) == 1
    alias = deployment.key(f"bluegreen/aliases/{ENV}/vizconfig")
    assert deployment.gate("blue").urn in alias.dependencies


# --- names, parents, providers -------------------------------------------------------------------

# The StackReference reads the deployer token this stack's last update left (for the records).
TOP_LEVEL = {"bluegreen:platform:Platform", "bluegreen:platform:PlatformCredentials",
             "bluegreen:service:Service", "pulumi:pulumi:StackReference", PROVIDER}


def test_every_resource_is_parented_and_named_after_its_parent(two_hosts):
    top = [r for r in two_hosts.resources if r.parent not in two_hosts.by_urn]
    assert {r.type for r in top} == TOP_LEVEL
    assert {r.name for r in top if r.type != PROVIDER} == {f"{ENV}-vizconfig", f"{STACK}-platform",
                                                            f"{STACK}-credentials",
                                                            f"{STACK}-last-update"}
    for resource in two_hosts.resources:
        if resource in top:
            continue
        parent = two_hosts.by_urn[resource.parent]
        assert not parent.custom, f"{resource.name} is parented to a custom resource"
        assert resource.name.startswith(parent.name + "-"), (resource.name, parent.name)


def test_providers_are_one_per_host_and_pinned_to_the_registry(two_hosts):
    providers = two_hosts.of_type(PROVIDER)
    assert sorted(p.name for p in providers) == [f"{STACK}-host-local", f"{STACK}-host-second"]
    for provider in providers:
        # Provider inputs travel as JSON text; with secrets inside, as a secret.
        auth = plain(provider.inputs["registryAuth"])
        auth = auth if isinstance(auth, list) else __import__("json").loads(auth)
        assert [a["address"] for a in auth] == [f"http://{REGISTRY}"]
        # The registry's credentials, as secrets.
        assert auth[0]["username"] == "bluegreen"
        assert auth[0]["password"] == fake_secret(f"{STACK}-credentials-registry-password")
        assert is_secret(provider.inputs["registryAuth"])


def test_service_containers_use_their_hosts_provider(two_hosts):
    for container in two_hosts.role("service"):
        host = two_hosts.host_of(container)
        assert container.provider_urn == two_hosts.provider_of_host(host).urn, container.name
        pull = two_hosts.one([p for p in two_hosts.of_type(REMOTE_IMAGE) if p.urn in container.dependencies])
        assert pull.provider_urn == container.provider_urn, "pulled on the host that runs it"


def test_every_docker_resource_has_an_explicit_provider(two_hosts):
    for resource in two_hosts.resources:
        if resource.type.startswith("docker:"):
            assert resource.provider_urn in {p.urn for p in two_hosts.of_type(PROVIDER)}, resource.name


def test_container_names_are_unique_per_host(two_hosts):
    for provider in two_hosts.of_type(PROVIDER):
        names = [c.inputs["name"] for c in two_hosts.containers if c.provider_urn == provider.urn]
        assert len(names) == len(set(names))


# --- environment ---------------------------------------------------------------------------------

def test_colour_environment_overrides_apply_to_their_colour_only(two_hosts):
    for container in two_hosts.role("service"):
        envs = plain(container.inputs["envs"])
        colour = container.label("bluegreen.colour")
        assert f"SERVICE_COLOUR={colour}" in envs
        assert f"SERVICE_ENVIRONMENT={ENV}" in envs
        assert "DB_ADDRESS=db:6379" in envs
        assert ("FEATURE=on" in envs) == (colour == "green")
        # Containers reach their own host's agent over its Docker bridge, when one is configured.
        host = HOSTS[two_hosts.host_of(container)]
        agent = [e for e in envs if e.startswith("CONSUL_HTTP_ADDR=")]
        if "bridgeAddress" in host:
            port = host["consul"].rsplit(":", 1)[1]
            assert agent == [f"CONSUL_HTTP_ADDR=http://{host['bridgeAddress']}:{port}"]
            assert "SERVICE_CONFIG_PREFIX=bluegreen/config/integration/vizconfig/" in envs
        else:
            assert agent == []


def test_manifest_config_goes_to_kv_under_the_service_prefix(one_host):
    keys = {k.inputs["key"]: k.inputs["value"] for k in one_host.keys
            if str(k.inputs.get("key", "")).startswith("bluegreen/config/")}
    assert keys == {f"bluegreen/config/{ENV}/vizconfig/page_size": "50",
                    f"bluegreen/config/{ENV}/vizconfig/title": "Visualization configurations"}


def test_route_key_holds_the_manifest_route(one_host):
    assert one_host.key(f"bluegreen/routes/{ENV}/vizconfig").inputs["value"] == "vizconfig"


# --- invalid input deploys nothing ---------------------------------------------------------------

def test_bad_live_colour_registers_nothing():
    with pytest.raises(ProgramFailed) as raised:
        run(config(live="purple"))
    assert isinstance(raised.value.error, pulumi.RunError)
    message = str(raised.value)
    assert f"stacks/Pulumi.{STACK}.yaml" in message
    assert "bluegreen.services.vizconfig.live" in message
    assert "use one of: blue, green" in message
    assert raised.value.resources == []


def test_live_colour_without_version_registers_nothing():
    with pytest.raises(ProgramFailed) as raised:
        run(config(live="green", green=None))
    assert f"stacks/Pulumi.{STACK}.yaml: bluegreen.services.vizconfig" in str(raised.value)
    assert raised.value.resources == []


def test_bad_manifest_registers_nothing(tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    manifest = tmp_path / "service.yaml"
    manifest.write_text("name: vizconfig\ndescription: x\nport: eighty\n")
    with pytest.raises(ProgramFailed) as raised:
        run(config(manifest=str(manifest)))
    assert isinstance(raised.value.error, pulumi.RunError)
    assert f"{manifest}: port: must be an integer" in str(raised.value)
    assert raised.value.resources == []


def test_missing_manifest_names_the_stack_key_that_points_at_it(tmp_path):
    with pytest.raises(ProgramFailed) as raised:
        run(config(manifest=str(tmp_path / "nowhere.yaml")))
    message = str(raised.value)
    assert (f"stacks/Pulumi.{STACK}.yaml: bluegreen.services.vizconfig.manifest: "
            f"{tmp_path / 'nowhere.yaml'} does not exist") in message
    assert "relative to the project folder (the one with Pulumi.yaml)" in message
    assert raised.value.resources == []


def test_a_manifest_path_is_relative_to_the_project_folder_not_the_stack_file():
    # stacks/Pulumi.<stack>.yaml says services/vizconfig/service.yaml, which exists from the root.
    with pytest.raises(ProgramFailed) as raised:
        run(config(manifest="../services/vizconfig/service.yaml"))
    assert f"{os.path.dirname(ROOT)}/services/vizconfig/service.yaml does not exist" in str(raised.value)


def test_manifest_name_mismatch_registers_nothing():
    cfg = config()
    cfg["services"] = {"vizconfig-api": cfg["services"]["vizconfig"]}
    with pytest.raises(ProgramFailed) as raised:
        run(cfg)
    assert "name" in str(raised.value) and "vizconfig-api" in str(raised.value)
    assert raised.value.resources == []


# --- the platform listens on 127.0.0.1 only ------------------------------------------------------

def test_registry_publishes_on_loopback_only(two_hosts):
    registry = two_hosts.one(two_hosts.role("registry"))
    assert registry.inputs["ports"] == [{"internal": 5000, "external": 15000, "ip": "127.0.0.1"}]
    assert registry.provider_urn == two_hosts.provider_of_host("local").urn


def test_consul_agents_bind_to_their_hosts_address(two_hosts):
    server = two_hosts.one(two_hosts.role("consul-server"))
    client = two_hosts.one(two_hosts.role("consul-client"))
    for agent, host in ((server, "local"), (client, "second")):
        command = agent.inputs["command"]
        assert agent.inputs["networkMode"] == "host"
        assert agent.provider_urn == two_hosts.provider_of_host(host).urn
        for flag in ("-bind", "-advertise"):
            assert f"{flag}=127.0.0.1" in command
        # The HTTP API also listens on the Docker bridge when the host names one, for containers.
        bridge = HOSTS[host].get("bridgeAddress")
        assert (f"-client=127.0.0.1 {bridge}" if bridge else "-client=127.0.0.1") in command
        port = HOSTS[host]["consul"].rsplit(":", 1)[1]
        assert f"-http-port={port}" in command
        assert f"-serf-lan-port={HOSTS[host]['consulSerfPort']}" in command
        assert not any("0.0.0.0" in part for part in command)
    assert "-server" in server.inputs["command"]
    assert "-server" not in client.inputs["command"]
    assert "-retry-join=127.0.0.1:18301" in client.inputs["command"]
    assert server.urn in client.all_dependencies


def test_proxy_listens_on_loopback(two_hosts):
    proxy = two_hosts.one(two_hosts.role("proxy"))
    assert proxy.inputs["networkMode"] == "host"
    assert "PROXY_LISTEN=127.0.0.1:18080" in proxy.inputs["envs"]
    assert "CONSUL_HTTP_ADDR=http://127.0.0.1:18500" in proxy.inputs["envs"]
    assert not proxy.inputs.get("ports")


def two_proxies_config():
    cfg = config(hosts=("local", "second"))
    cfg["hosts"]["local"]["address"], cfg["hosts"]["second"]["address"] = "10.0.0.11", "10.0.0.12"
    cfg["platform"]["proxy"].update(hosts=["local", "second"], virtualAddress="10.0.0.100")
    return cfg


def test_two_proxies_each_read_their_own_agent_behind_one_virtual_address():
    deployment = run(two_proxies_config())
    proxies = {p.label("bluegreen.host"): p for p in deployment.role("proxy")}
    assert set(proxies) == {"local", "second"}
    for host, proxy in proxies.items():
        assert proxy.inputs["name"] == f"bluegreen-{STACK}-proxy-{host}"
        assert proxy.provider_urn == deployment.provider_of_host(host).urn
        # Every address of its host: the virtual one comes and goes.
        assert "PROXY_LISTEN=0.0.0.0:18080" in proxy.inputs["envs"]
        assert f"CONSUL_HTTP_ADDR={HOSTS[host]['consul']}" in proxy.inputs["envs"]
    vrrp = {c.label("bluegreen.host"): c for c in deployment.role("vrrp")}
    assert vrrp["local"].inputs["capabilities"] == {"adds": ["NET_ADMIN"]}
    assert "VRRP_PEERS=10.0.0.12" in vrrp["local"].inputs["envs"]
    assert "VRRP_PRIORITY=200" in vrrp["local"].inputs["envs"]
    assert "VRRP_PRIORITY=190" in vrrp["second"].inputs["envs"]
    assert "PROXY_HEALTH=http://10.0.0.12:18080/healthz" in vrrp["second"].inputs["envs"]
    # The flip is proven at each proxy, by its own address; the catalogue lists them.
    alias = deployment.key(f"bluegreen/aliases/{ENV}/vizconfig")
    assert alias.inputs["urls"] == {h: f"http://10.0.0.{n}:18080/{ENV}/vizconfig/health"
                                    for h, n in (("local", 11), ("second", 12))}
    listed = json.loads(deployment.key("bluegreen/proxy/proxies").inputs["value"])
    assert listed == {"virtualAddress": "10.0.0.100", "proxies": [
        {"host": "local", "url": "http://10.0.0.11:18080"},
        {"host": "second", "url": "http://10.0.0.12:18080"}]}


def test_no_container_publishes_beyond_loopback(two_hosts):
    for container in two_hosts.containers:
        for port in container.inputs.get("ports") or []:
            assert port.get("ip") == "127.0.0.1", container.name
        if container.inputs.get("networkMode") == "host":
            assert container.label("bluegreen.role") in {"consul-server", "consul-client", "proxy",
                                                         "registrator", "watchdog", "prometheus"}


PLATFORM_OUTPUTS = {**PLATFORM_CREDENTIALS, "registry": "127.0.0.1:25000",
                    "proxy": "http://127.0.0.1:18080", "consul": "http://127.0.0.1:18500"}


def referencing_config(build_host=None):
    """Two hosts on another stack's platform (StackReference), optionally naming the build host."""
    cfg = config(hosts=("local", "second"))
    cfg["platform"] = {}
    cfg["platformStack"] = "acme/bluegreen/local"
    if build_host:
        cfg["buildHost"] = build_host
    return cfg


def run_referencing(build_host):
    return Deployment(run_program(referencing_config(build_host), stack=STACK,
                                  stack_outputs=PLATFORM_OUTPUTS))


def test_a_referencing_stack_with_several_hosts_must_name_its_build_host():
    with pytest.raises(ProgramFailed) as raised:
        run(referencing_config())
    assert "bluegreen.buildHost" in str(raised.value) and "local, second" in str(raised.value)
    assert raised.value.resources == []


def test_images_build_on_the_named_build_host():
    deployment = run_referencing("second")
    builds = [r for r in deployment.of_type("docker:index/remoteImage:RemoteImage") if "build" in r.inputs]
    assert builds and all(b.provider_urn == deployment.provider_of_host("second").urn for b in builds)


def test_every_host_gets_a_registrator_watching_its_own_engine(two_hosts):
    registrators = two_hosts.role("registrator")
    assert len(registrators) == 2
    for registrator in registrators:
        host = registrator.label("bluegreen.host")
        assert registrator.provider_urn == two_hosts.provider_of_host(host).urn
        socket = HOSTS[host]["docker"].removeprefix("unix://")
        assert [v["hostPath"] for v in registrator.inputs["volumes"]] == [socket]
        assert f"CONSUL_HTTP_ADDR={HOSTS[host]['consul']}" in registrator.inputs["envs"]


def test_service_containers_carry_what_the_registrator_needs(one_host):
    for container in one_host.role("service"):
        assert container.label("bluegreen.health.path") == "/health"
        assert float(container.label("bluegreen.health.interval")) == 1.0


# --- a stack that uses another stack's platform --------------------------------------------------

def test_platform_stack_reference_supplies_registry_and_agents():
    deployment = run_referencing("local")
    assert not deployment.of_type("bluegreen:platform:Platform")
    assert not [c for c in deployment.containers if c.label("bluegreen.role") in
                {"registry", "proxy", "consul-server", "consul-client"}]
    reference = deployment.one(deployment.of_type("pulumi:pulumi:StackReference"))
    assert reference.inputs["name"] == "acme/bluegreen/local"
    for container in deployment.role("service"):
        assert re.fullmatch(r"127\.0\.0\.1:25000/vizconfig@sha256:[0-9a-f]{64}", container.inputs["image"])
    for registration in deployment.registrations:
        host = registration.inputs["payload"]["Meta"]["host"]
        assert registration.inputs["address"] == HOSTS[host]["consul"]


def test_a_referencing_stack_proves_its_flips_on_each_proxy_of_its_platform():
    proxies = {"lab1": "http://10.0.0.11:18080", "lab2": "http://10.0.0.12:18080"}
    for outputs, expected in (({**PLATFORM_OUTPUTS, "proxies": proxies}, proxies),
                              (PLATFORM_OUTPUTS, {"proxy": PLATFORM_OUTPUTS["proxy"]})):
        deployment = Deployment(run_program(referencing_config("local"), stack=STACK,
                                            stack_outputs=outputs))
        alias = deployment.key(f"bluegreen/aliases/{ENV}/vizconfig")
        assert alias.inputs["urls"] == {h: f"{u}/{ENV}/vizconfig/health" for h, u in expected.items()}


# --- the committed local stack -------------------------------------------------------------------

def test_the_local_stack_file_deploys_under_mocks():
    raw = stack_config("local")
    deployment = Deployment(run_program(raw, stack="local"))
    for name, settings in raw["services"].items():
        alias = deployment.key(f"bluegreen/aliases/{raw['environment']}/{name}")
        gate = deployment.gate(settings["live"], raw["environment"])
        assert gate.urn in alias.dependencies
        assert alias.inputs["value"] == settings["live"]


# --- secret environment -------------------------------------------------------------------------



def test_secret_environment_reaches_only_its_service_and_stays_secret():
    cfg = config()
    cfg["secrets"] = {"vizconfig": {"DB_PASSWORD": "hunter2"}, "other": {"TOKEN": "x"}}
    deployment = run(cfg)
    for container in deployment.role("service"):
        envs = container.inputs["envs"]
        assert isinstance(envs, dict) and envs.get(SECRET_SIG), "envs must be sent as a secret"
        assert "DB_PASSWORD=hunter2" in envs["value"]
        assert not any(e.startswith("TOKEN=") for e in envs["value"])
    for container in deployment.role("dependency"):
        assert not any("hunter2" in str(e) for e in container.inputs["envs"])


def test_without_secrets_the_environment_is_plain():
    for container in run(config()).role("service"):
        assert isinstance(container.inputs["envs"], list)


def test_secrets_set_without_encryption_are_refused_and_nothing_deploys():
    cfg = config()
    cfg["secrets"] = {"vizconfig": {"DB_PASSWORD": "hunter2"}}
    cfg["plain_secrets"] = True
    with pytest.raises(ProgramFailed) as raised:
        run(cfg)
    assert f"stacks/Pulumi.{STACK}.yaml: bluegreen.secrets: holds plain-text values" in str(raised.value)
    assert "--secret" in str(raised.value)
    assert raised.value.resources == []


def _released(version, spec_changes, digest_char="9"):
    import dataclasses

    from bluegreen.components.model.manifest import load_manifest
    from bluegreen.components.model.release import Release, RuntimeSpec
    from bluegreen.components.naming import context_digest
    manifest = load_manifest(os.path.join(ROOT, "services/vizconfig/service.yaml"))
    source = context_digest(manifest.build.context, exclude_files=(manifest.path,))
    return Release("vizconfig", version, f"{REGISTRY}/vizconfig@sha256:{digest_char * 64}", source,
                   dataclasses.replace(RuntimeSpec.of(manifest), **spec_changes))


def test_a_released_version_is_not_built_and_runs_its_recorded_spec():
    from bluegreen.components.consul.records import ServiceRecords
    blue = _released("1.0.0", {"memory_mb": 48, "port": 7000})
    records = {"vizconfig": ServiceRecords(releases={"1.0.0": blue}, slots={"blue": "1.0.0"},
                                           live="blue")}
    deployment = Deployment(run_program(config(live="blue"), stack=STACK, records=records))
    assert [b.inputs["name"] for b in deployment.builds if "/vizconfig:" in b.inputs["name"]] == \
        [f"{REGISTRY}/vizconfig:2.0.0"]
    [container] = [c for c in deployment.role("service") if c.label("bluegreen.colour") == "blue"]
    assert container.inputs["image"] == blue.reference
    assert container.inputs["memory"] == 48 and container.inputs["ports"][0]["internal"] == 7000
    [registration] = [r for r in deployment.registrations
                      if r.inputs["payload"]["Tags"][1] == "blue"]
    assert registration.inputs["payload"]["Meta"]["image"] == blue.reference
    # the release record is rewritten as it was, and kept when the version leaves the stack
    record = deployment.key("bluegreen/releases/vizconfig/1.0.0")
    assert json.loads(record.inputs["value"])["reference"] == blue.reference
    assert json.loads(record.inputs["value"])["spec"]["memory_mb"] == 48


def test_each_colour_records_its_release_and_history_after_its_gate(one_host):
    for colour, version in (("blue", "1.0.0"), ("green", "2.0.0")):
        slot = one_host.key(f"bluegreen/slots/{ENV}/vizconfig/{colour}")
        assert json.loads(slot.inputs["value"])["version"] == version
        assert one_host.gate(colour).urn in slot.dependencies
        history = json.loads(one_host.key(f"bluegreen/history/{ENV}/vizconfig/{version}").inputs["value"])
        assert history["version"] == version and history["colour"] == colour
        assert ("liveAt" in history) == (colour == "green")   # config(): green is live

# --- a platform on hosts with their own addresses (the lab, a real site) -------------------------

def test_lab_platform_servers_quorum_registry_and_proxy_on_the_hosts_address():
    cfg = config(hosts=("local",))
    cfg["hosts"] = {
        name: {"docker": f"ssh://root@10.0.0.{n}", "consul": f"http://10.0.0.{n}:8500",
               "address": f"10.0.0.{n}", "bridgeAddress": f"10.1.{n}.1",
               "dockerSocket": f"/run/lab/{name}.sock"}
        for n, name in ((1, "one"), (2, "two"), (3, "three"))}
    cfg["platform"] = {**cfg["platform"], "host": "one", "servers": ["one", "two", "three"],
                       "agents": []}
    cfg["platform"]["proxy"] = {**cfg["platform"]["proxy"], "address": "10.0.0.1"}
    cfg["services"]["vizconfig"]["hosts"] = ["one", "two"]
    deployment = run(cfg)
    servers = deployment.role("consul-server")
    assert len(servers) == 3 and not deployment.role("consul-client")
    for server in servers:
        assert "-bootstrap-expect=3" in server.inputs["command"]
        # Each waits for the others only through retry-join, not through Pulumi dependencies.
        assert not {s.urn for s in servers} & server.all_dependencies
    registry = deployment.one(deployment.role("registry"))
    assert registry.inputs["ports"] == [{"internal": 5000, "external": 15000, "ip": "10.0.0.1"}]
    proxy = deployment.one(deployment.role("proxy"))
    assert "PROXY_LISTEN=10.0.0.1:18080" in proxy.inputs["envs"]
    for container in deployment.role("service"):
        host = deployment.host_of(container)
        assert container.inputs["ports"][0]["ip"] == cfg["hosts"][host]["address"]
    registrators = deployment.role("registrator")
    assert {r.inputs["volumes"][0]["hostPath"] for r in registrators} == \
        {"/run/lab/one.sock", "/run/lab/two.sock", "/run/lab/three.sock"}
    # Built on an engine reached over ssh: the legacy builder (buildx would build on DOCKER_HOST).
    assert all(b.inputs["build"].get("useLegacyBuilder") for b in deployment.builds)


def test_builds_on_this_machines_engine_keep_their_builder(one_host):
    # A changed builder would change every image's digest, and so the live colour's containers.
    assert one_host.builds and not any(b.inputs["build"].get("useLegacyBuilder") for b in one_host.builds)

# --- what a service calls ------------------------------------------------------------------------

BRIDGE = "172.17.0.1"


def caller_manifest(tmp_path) -> str:
    """A service (with a Dockerfile beside its manifest) that calls vizconfig: its manifest's path."""
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    manifest = tmp_path / "service.yaml"
    manifest.write_text("name: caller\ndescription: Calls vizconfig\nport: 8000\ncalls: [vizconfig]\n")
    return str(manifest)


def with_caller(tmp_path):
    """The example plus a second service of the same environment that calls it, on a host whose
    containers reach the proxy at its bridge address."""
    manifest = caller_manifest(tmp_path)
    cfg = config()
    cfg["hosts"]["local"]["bridgeAddress"] = BRIDGE
    cfg["services"]["caller"] = {"manifest": manifest, "live": "blue", "blue": {"version": "1.0.0"}}
    return run(cfg)


def service_envs(deployment, service):
    """The environment of every container of `service`, by instance."""
    return {c.label("bluegreen.instance"): sorted(c.inputs["envs"]) for c in deployment.role("service")
            if c.label("bluegreen.service") == service}


def test_every_variable_the_platform_sets_is_reserved_from_manifests_and_stack_config(tmp_path):
    # The caller's manifest and stack entry set no variable: all it gets is the platform's.
    envs = service_envs(with_caller(tmp_path), "caller")
    assert envs
    for env in envs.values():
        names = {entry.split("=", 1)[0] for entry in env}
        assert {"SERVICE_NAME", "CONSUL_HTTP_ADDR", "VIZCONFIG_URL"} <= names
        assert names <= set(reserved_variables(("vizconfig",)))


def test_the_catalogue_entry_lists_the_callees_at_their_stable_uris(tmp_path):
    deployment = with_caller(tmp_path)
    caller = json.loads(deployment.key(f"bluegreen/catalogue/{ENV}/caller").inputs["value"])
    callee = json.loads(deployment.key(f"bluegreen/catalogue/{ENV}/vizconfig").inputs["value"])
    assert caller["calls"] == [{"service": "vizconfig", "stableUri": f"/{ENV}/vizconfig/"}]
    assert callee["calls"] == []


def test_the_catalogue_names_a_callee_at_the_route_its_callers_are_given(tmp_path):
    # A callee served under a route of its own (not its name): the catalogue's URI and the
    # caller's variable agree.
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    callee = tmp_path / "callee.yaml"
    callee.write_text("name: store\ndescription: Stores\nport: 8000\nroute: storage\n")
    caller = tmp_path / "service.yaml"
    caller.write_text("name: caller\ndescription: Calls store\nport: 8000\ncalls: [store]\n")
    cfg = config()
    cfg["hosts"]["local"]["bridgeAddress"] = BRIDGE
    for name, manifest in (("store", callee), ("caller", caller)):
        cfg["services"][name] = {"manifest": str(manifest), "live": "blue", "blue": {"version": "1.0.0"}}
    deployment = run(cfg)
    entry = json.loads(deployment.key(f"bluegreen/catalogue/{ENV}/caller").inputs["value"])
    assert entry["calls"] == [{"service": "store", "stableUri": f"/{ENV}/storage/"}]
    for env in service_envs(deployment, "caller").values():
        assert f"STORE_URL=http://{BRIDGE}:18080/{ENV}/storage/" in env


def test_a_caller_gets_each_callees_stable_uri_at_the_proxys_bridge_address(tmp_path):
    envs = service_envs(with_caller(tmp_path), "caller")
    assert envs
    for env in envs.values():
        assert f"VIZCONFIG_URL=http://{BRIDGE}:18080/{ENV}/vizconfig/" in env


def test_a_service_that_calls_nothing_gets_no_new_environment(tmp_path):
    alone = config()
    alone["hosts"]["local"]["bridgeAddress"] = BRIDGE
    assert service_envs(with_caller(tmp_path), "vizconfig") == service_envs(run(alone), "vizconfig")


def referencing_caller_envs(tmp_path, proxy: str, addresses: dict[str, str] | None = None) -> dict:
    """The caller's container environment per host (local, second), in a stack on another stack's
    platform whose proxy is at `proxy`; `addresses` gives hosts their own addresses."""
    cfg = referencing_config("second")
    cfg["hosts"]["local"]["bridgeAddress"] = BRIDGE
    for host, address in (addresses or {}).items():
        cfg["hosts"][host]["address"] = address
    cfg["services"]["caller"] = {"manifest": caller_manifest(tmp_path), "live": "blue",
                                 "blue": {"version": "1.0.0"}, "hosts": ["local", "second"]}
    deployment = Deployment(run_program(cfg, stack=STACK, stack_outputs={**PLATFORM_OUTPUTS, "proxy": proxy}))
    return {c.label("bluegreen.instance").rsplit("-", 2)[1]: c.inputs["envs"]
            for c in deployment.role("service") if c.label("bluegreen.service") == "caller"}


def test_a_referencing_caller_reaches_the_proxy_on_the_platform_stacks_proxy_port(tmp_path):
    envs = referencing_caller_envs(tmp_path, "http://127.0.0.1:19999")
    assert f"VIZCONFIG_URL=http://{BRIDGE}:19999/{ENV}/vizconfig/" in envs["local"]
    assert f"VIZCONFIG_URL=http://172.31.250.1:19999/{ENV}/vizconfig/" in envs["second"]


def test_a_caller_on_another_host_than_the_proxys_reaches_it_at_the_proxys_own_address(tmp_path):
    # Hosts on their own addresses (as in the lab), the proxy on the first: its bridge listener
    # serves only its own host, so callers elsewhere go to its address.
    envs = referencing_caller_envs(tmp_path, "http://10.9.0.11:19999",
                                   {"local": "10.9.0.11", "second": "10.9.0.12"})
    assert f"VIZCONFIG_URL=http://{BRIDGE}:19999/{ENV}/vizconfig/" in envs["local"]
    assert f"VIZCONFIG_URL=http://10.9.0.11:19999/{ENV}/vizconfig/" in envs["second"]


def test_a_caller_on_a_host_without_a_bridge_address_is_refused_naming_the_field(tmp_path):
    cfg = config()
    cfg["services"]["caller"] = {"manifest": caller_manifest(tmp_path), "live": "blue",
                                 "blue": {"version": "1.0.0"}}
    with pytest.raises(ProgramFailed) as raised:
        run(cfg)
    assert "bluegreen.hosts.local.bridgeAddress" in str(raised.value)
    assert raised.value.resources == []


def test_the_proxy_listens_on_the_platform_hosts_bridge_through_kv_not_its_container():
    with_bridge = config()
    with_bridge["hosts"]["local"]["bridgeAddress"] = BRIDGE
    deployment, plain = run(with_bridge), run(config())
    assert deployment.key("bluegreen/proxy/bridge-listen").inputs["value"] == f"{BRIDGE}:18080"
    assert not [k for k in plain.of_type(CONSUL_KEY) if k.inputs["key"] == "bluegreen/proxy/bridge-listen"]
    proxies = [d.one(d.role("proxy")).inputs for d in (deployment, plain)]
    assert proxies[0] == proxies[1]
