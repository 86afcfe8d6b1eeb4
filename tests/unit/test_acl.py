"""Least privilege, without Consul: ACL rules per actor, agent configuration, generated secrets,
htpasswd entries, site-supplied credentials, and how tokens reach resources (under mocks)."""

import base64
import json
import re
import uuid

import bcrypt
import pytest

from bluegreen.components.consul import api as consul_api
from bluegreen.components.consul import rules
from bluegreen.components.consul.key import _ConsulKeyProvider
from bluegreen.components.consul.registration import _AgentRegistrationProvider
from bluegreen.components.model.config import Host, parse_platform_secrets
from bluegreen.components.model.validation import ConfigError
from bluegreen.components.naming import PLATFORM_TOKEN_FILE
from bluegreen.components.platform.consul_cluster import ACL_SETTINGS, agent_command, agent_secrets
from bluegreen.components.platform.generated_secret import generate
from bluegreen.components import naming
from bluegreen.components.model.credentials import credential, deployer_token
from bluegreen.components.platform.htpasswd import _HtpasswdProvider, entry_matches, htpasswd_entry
from unit_harness import (ACL_TOKEN, CONTAINER, HTPASSWD, ProgramFailed, fake_secret, is_secret,
                          plain, run_program)

from test_wiring import HOSTS, PLATFORM_OUTPUTS, STACK, Deployment, config, referencing_config


# --- rules ----------------------------------------------------------------------------------------

def test_a_service_token_reads_its_own_config_prefix_alias_and_drain_bound_and_nothing_else():
    assert rules.service_rules("production", "vizconfig") == (
        'key_prefix "bluegreen/config/production/vizconfig/" { policy = "list" }\n'
        'key "bluegreen/aliases/production/vizconfig" { policy = "read" }\n'
        'key "bluegreen/proxy/drain-timeout" { policy = "read" }\n')


def test_the_proxy_reads_what_it_renders_and_writes_nothing():
    text = rules.proxy_rules()
    for tree in ("aliases", "routes", "catalogue"):
        assert f'key_prefix "bluegreen/{tree}" {{ policy = "list" }}' in text
    assert "config" not in text and "write" not in text


def test_a_deployer_writes_registrations_and_its_own_environments_kv_trees_but_no_acls():
    text = rules.deployer_rules("integration")
    assert 'service_prefix "" { policy = "write" }' in text
    for tree in ("aliases", "config", "routes", "catalogue", "splits", "bake"):
        assert f'key_prefix "bluegreen/{tree}/integration/" {{ policy = "write" }}' in text
    assert 'key_prefix "bluegreen/releases/" { policy = "write" }' in text
    assert "acl" not in text and 'key_prefix "" ' not in text


def test_a_deployer_cannot_flip_another_environment_nor_read_its_configuration():
    """Consul applies the longest matching prefix: of these rules, which one decides a key."""
    text = rules.deployer_rules("integration")
    grants = dict(re.findall(r'key_prefix "([^"]*)" \{ policy = "(\w+)" \}', text))

    def policy(key: str) -> str:
        matching = [prefix for prefix in grants if key.startswith(prefix)]
        return grants[max(matching, key=len)] if matching else "deny"

    assert policy(naming.alias_key("integration", "vizconfig")) == "write"
    assert policy(naming.alias_key("production", "vizconfig")) == "list"
    assert policy(naming.split_key("production", "vizconfig")) == "list"
    assert policy(naming.config_prefix("production", "vizconfig") + "greeting") == "deny"
    assert policy(naming.config_prefix("integration", "vizconfig") + "greeting") == "write"
    assert policy(naming.release_prefix("vizconfig") + "1.0.0") == "write"
    # An environment named like another's prefix reaches nothing of it.
    assert policy(naming.alias_key("integration-2", "vizconfig")) == "list"


def test_agents_and_registrators_are_bound_to_their_node():
    assert 'node "host2" { policy = "write" }' in rules.agent_rules("host2")
    assert 'node "host2" { policy = "read" }' in rules.registrator_rules("host2")
    assert "key" not in rules.agent_rules("host2") + rules.registrator_rules("host2")


def test_only_the_issuer_may_create_tokens():
    assert rules.issuer_rules() == 'acl = "write"\n'
    others = [rules.agent_rules("a"), rules.registrator_rules("a"), rules.proxy_rules(),
              rules.deployer_rules("e"), rules.watchdog_rules(), rules.service_rules("e", "s")]
    assert not any("acl" in text for text in others)


def test_the_watchdog_flips_aliases_back_and_marks_bakes_but_touches_no_config_or_registration():
    text = rules.watchdog_rules()
    for prefix in ("bluegreen/bake", "bluegreen/aliases/", "bluegreen/history/"):
        assert f'key_prefix "{prefix}" {{ policy = "write" }}' in text
    assert 'key_prefix "bluegreen/routes/" { policy = "list" }' in text
    assert 'service_prefix "" { policy = "read" }' in text
    assert "config" not in text
    assert "releases" not in text
    assert 'service_prefix "" { policy = "write" }' not in text


def test_the_watchdogs_register_only_themselves_and_hold_only_their_leader_key():
    text = rules.watchdog_rules()
    assert 'service "bluegreen-watchdog" { policy = "write" }' in text
    assert 'key "bluegreen/watchdog/leader" { policy = "write" }' in text
    assert 'session_prefix "" { policy = "write" }' in text
    assert "node_prefix \"\" { policy = \"write\" }" not in text


# --- agents ---------------------------------------------------------------------------------------

HOST = Host(name="local", docker="unix:///var/run/docker.sock", consul="http://127.0.0.1:18500",
            bridge_address="172.17.0.1")


def test_only_the_server_gets_the_initial_management_token():
    server = json.loads(agent_secrets("key", "agent-secret", "management-secret"))
    client = json.loads(agent_secrets("key", "agent-secret"))
    assert server == {"encrypt": "key", "acl": {"tokens": {"agent": "agent-secret",
                                                           "initial_management": "management-secret"}}}
    assert client == {"encrypt": "key", "acl": {"tokens": {"agent": "agent-secret"}}}


def test_the_agent_command_turns_acls_on_and_holds_no_secret():
    command = agent_command(HOST, "dc1", (HOST,))
    assert "-config-file=/consul/config/secrets.json" in command
    assert f"-hcl={ACL_SETTINGS}" in command
    assert 'default_policy = "deny"' in ACL_SETTINGS and "enable_key_list_policy = true" in ACL_SETTINGS
    assert not any("token" in part or "encrypt" in part for part in command)
    assert "-client=127.0.0.1 172.17.0.1" in command


# --- generated and supplied secrets ----------------------------------------------------------------

def test_generated_secrets_have_the_shape_consul_and_docker_expect():
    uuid.UUID(generate("uuid"))
    assert len(base64.b64decode(generate("gossip-key"))) == 32
    assert len(generate("password")) >= 40
    assert generate("password") != generate("password")
    with pytest.raises(ValueError):
        generate("rsa")


def test_htpasswd_entries_are_bcrypt_with_a_random_salt():
    entry = htpasswd_entry("ci", "s3cret-password")
    again = htpasswd_entry("ci", "s3cret-password")
    user, hashed = entry.rstrip("\n").split(":", 1)
    assert user == "ci" and hashed.startswith("$2b$")
    # Not derived from the password: the same password hashes differently every time.
    assert again != entry and hashed[7:29] != again.split(":", 1)[1][7:29]
    assert bcrypt.checkpw(b"s3cret-password", hashed.encode())
    assert entry_matches(again, "ci", "s3cret-password")
    assert not entry_matches(entry, "ci", "other-password")
    assert not entry_matches(entry, "cd", "s3cret-password")
    assert "s3cret-password" not in entry
    with pytest.raises(ValueError):
        htpasswd_entry("a:b", "x")


def test_the_htpasswd_entry_is_made_once_and_kept_until_the_user_or_password_changes():
    provider = _HtpasswdProvider()
    made = provider.create({"username": "ci", "password": "s3cret-password"})
    assert entry_matches(made.outs["entry"], "ci", "s3cret-password")
    assert "password" not in made.outs
    olds = {**made.outs, "password": "s3cret-password"}
    assert not provider.diff(made.id, olds, {"username": "ci", "password": "s3cret-password"}).changes
    for news in ({"username": "ci", "password": "new-password!"},
                 {"username": "cd", "password": "s3cret-password"}):
        diff = provider.diff(made.id, olds, news)
        assert diff.changes and diff.replaces == ["password"]


def test_site_credentials_are_checked_without_quoting_them():
    supplied = parse_platform_secrets("platform", {
        "consulManagementToken": str(uuid.uuid4()),
        "consulGossipKey": base64.b64encode(b"k" * 32).decode(),
        "registryUsername": "ci", "registryPassword": "long-enough-password"})
    assert supplied.registry_username == "ci"
    assert "long-enough-password" not in repr(supplied)
    with pytest.raises(ConfigError) as bad:
        parse_platform_secrets("platform", {"consulManagementToken": "not-a-uuid-hunter2"})
    assert "bluegreen.platformSecrets.consulManagementToken" in str(bad.value)
    assert "hunter2" not in str(bad.value) and "uuidgen" in str(bad.value)
    with pytest.raises(ConfigError) as bad:
        parse_platform_secrets("platform", {"consulGossipKey": "c2hvcnQ="})
    assert "consul keygen" in str(bad.value)
    with pytest.raises(ConfigError) as bad:
        parse_platform_secrets("platform", {"registryUsername": "ci"})
    assert "together" in str(bad.value)
    with pytest.raises(ConfigError) as bad:
        parse_platform_secrets("platform", {"registryToken": "x"})
    assert "unknown key" in str(bad.value)


def test_a_missing_platform_credential_says_which_stack_to_deploy():
    assert credential({"consulIssuerToken": "t"}, "consulIssuerToken", "platform") == "t"
    with pytest.raises(RuntimeError) as missing:
        credential(None, "consulIssuerToken", "platform")
    assert "pulumi up --stack platform" in str(missing.value)


def test_an_environment_without_a_deployer_token_is_told_how_to_get_one():
    values = {"consulDeployerTokens": {"integration": "t1", "production": "t2"}}
    assert deployer_token(values, "production", "organization/bluegreen/platform") == "t2"
    with pytest.raises(RuntimeError) as missing:
        deployer_token(values, "staging", "organization/bluegreen/platform")
    assert "add staging to bluegreen:platform.environments in stacks/Pulumi.platform.yaml" in \
        str(missing.value) and "has: integration, production" in str(missing.value)


def test_every_consul_call_needs_a_token_and_accessors_are_stable():
    with pytest.raises(consul_api.ConsulError) as refused:
        consul_api.kv_get("http://127.0.0.1:1", "bluegreen/aliases/x/y", "")
    assert "no Consul token" in str(refused.value)
    assert consul_api.accessor_id("bluegreen-proxy") == consul_api.accessor_id("bluegreen-proxy")
    assert consul_api.accessor_id("bluegreen-proxy") != consul_api.accessor_id("bluegreen-deployer")


# --- a new token alone rewrites nothing --------------------------------------------------------------

def test_a_new_token_alone_does_not_re_register_or_rewrite(monkeypatch):
    calls = []
    monkeypatch.setattr(consul_api, "agent_register", lambda *a: calls.append(("register", a)))
    monkeypatch.setattr(consul_api, "kv_put", lambda *a: calls.append(("put", a)))
    registration = {"address": "http://a", "payload": {"ID": "i"}, "token": "old"}
    key = {"address": "http://a", "key": "k", "value": "v", "token": "old"}
    assert _AgentRegistrationProvider().diff("i", registration, {**registration, "token": "new"}).changes
    out = _AgentRegistrationProvider().update("i", registration, {**registration, "token": "new"})
    assert out.outs["token"] == "new"
    _ConsulKeyProvider().update("k", key, {**key, "token": "new"})
    assert calls == []
    _ConsulKeyProvider().update("k", key, {**key, "value": "w", "token": "new"})
    assert calls == [("put", ("http://a", "k", "w", "new"))]


# --- wiring under mocks ----------------------------------------------------------------------------

def envs_of(container) -> list[str]:
    return plain(container.inputs["envs"])


def test_each_service_container_gets_its_own_token_as_a_secret():
    resources = run_program(config(hosts=("local", "second")), stack=STACK)
    tokens = [r for r in resources if r.type == ACL_TOKEN and r.inputs["name"].startswith("bluegreen-service-")]
    assert [t.inputs["name"] for t in tokens] == ["bluegreen-service-integration-vizconfig"]
    service_token = fake_secret(tokens[0].name)
    # Made with the issuer's token, allowed only its own prefix.
    assert plain(tokens[0].inputs["token"]) == fake_secret(f"{STACK}-platform-consul-issuer-token")
    assert tokens[0].inputs["rules"] == rules.service_rules("integration", "vizconfig")
    deployers = [fake_secret(r.name) for r in resources
                 if r.type == ACL_TOKEN and r.inputs["name"].startswith("bluegreen-deployer-")]
    assert deployers
    deployment = Deployment(resources)
    assert deployment.role("service")
    for container in deployment.role("service"):
        envs = envs_of(container)
        bridged = "bridgeAddress" in HOSTS[deployment.host_of(container)]
        # The token is a file (a secret upload); the environment only names it, and stays plain
        # for the policy pack.
        files = [(u["file"], plain(u["content"]), u["permissions"])
                 for u in plain(container.inputs.get("uploads") or [])]
        assert files == ([("/etc/bluegreen-consul-token", service_token, "0444")] if bridged else [])
        assert ("CONSUL_HTTP_TOKEN_FILE=/etc/bluegreen-consul-token" in envs) == bridged
        assert isinstance(container.inputs["envs"], list)
        if bridged:
            assert is_secret(container.inputs["uploads"])
        assert not any(deployer in e for e in envs for deployer in deployers)


def test_the_platform_makes_a_deployer_token_for_each_environment_it_serves():
    cfg = config()
    cfg["platform"]["environments"] = ["production", "integration"]
    resources = run_program(cfg, stack=STACK)
    deployers = {r.inputs["name"]: r for r in resources
                 if r.type == ACL_TOKEN and r.inputs["name"].startswith("bluegreen-deployer-")}
    # Its own environment (integration) once, then the others listed.
    assert sorted(deployers) == ["bluegreen-deployer-integration", "bluegreen-deployer-production"]
    for environment in ("integration", "production"):
        assert deployers[f"bluegreen-deployer-{environment}"].inputs["rules"] == \
            rules.deployer_rules(environment)
    # The stack's own services write their keys with their environment's token.
    keys = [r for r in resources if r.type.endswith("consul:Key") and r.name.startswith("integration-vizconfig")]
    own = fake_secret(deployers["bluegreen-deployer-integration"].name)
    assert keys and all(plain(k.inputs["token"]) == own for k in keys)


def test_platform_containers_get_secrets_as_files_not_in_command_or_environment():
    resources = run_program(config(hosts=("local", "second")), stack=STACK)
    secrets = {fake_secret(r.name) for r in resources if r.type == ACL_TOKEN} | {
        fake_secret(f"{STACK}-credentials-{name}")
        for name in ("consul-management", "consul-gossip", "registry-password")}
    platform = [r for r in resources if r.type == CONTAINER and any(
        e["label"] == "bluegreen.role" and e["value"] in {"consul-server", "consul-client",
                                                          "registrator", "proxy", "registry",
                                                          "watchdog"}
        for e in r.inputs["labels"])]
    assert len(platform) == 8    # two watchdogs
    for container in platform:
        visible = json.dumps([container.inputs.get(k) for k in ("command", "envs", "entrypoints",
                                                                "labels", "healthcheck")])
        assert not any(secret in visible for secret in secrets), container.name
        assert is_secret(container.inputs["uploads"]), container.name
        uploads = plain(container.inputs["uploads"])
        assert uploads and all(u["permissions"] == "0600" for u in uploads)
        # A token file is named where Consul's tools (and ours) look for it.
        for upload in uploads:
            if upload["file"] == PLATFORM_TOKEN_FILE:
                assert f"CONSUL_HTTP_TOKEN_FILE={PLATFORM_TOKEN_FILE}" in container.inputs["envs"]
        assert container.name.endswith(("-registry-container", *(f"-consul-{h}" for h in ("local", "second")))) or \
            f"CONSUL_HTTP_TOKEN_FILE={PLATFORM_TOKEN_FILE}" in container.inputs["envs"], container.name


def test_a_referencing_stack_deploys_with_the_platforms_credentials():
    resources = run_program(referencing_config("local"), stack=STACK, stack_outputs=PLATFORM_OUTPUTS)
    keys = [r for r in resources if r.type.endswith("consul:Key")]
    assert keys and all(plain(k.inputs["token"]) == "deployer-token" for k in keys)
    tokens = [r for r in resources if r.type == ACL_TOKEN]
    assert [plain(t.inputs["token"]) for t in tokens] == ["issuer-token"]
    providers = [r for r in resources if r.type == "pulumi:providers:docker"]
    for provider in providers:
        auth = json.loads(plain(provider.inputs["registryAuth"])) \
            if isinstance(plain(provider.inputs["registryAuth"]), str) else plain(provider.inputs["registryAuth"])
        assert (auth[0]["username"], auth[0]["password"]) == ("pusher", "registry-pw")


def test_a_referenced_platform_without_credentials_fails_naming_it():
    outputs = {k: v for k, v in PLATFORM_OUTPUTS.items() if k != "credentials"}
    with pytest.raises(ProgramFailed) as failed:
        run_program(referencing_config("local"), stack=STACK, stack_outputs=outputs)
    assert "acme/bluegreen/local has no `credentials` output" in str(failed.value)


def test_plain_text_platform_secrets_are_refused_and_nothing_deploys():
    cfg = config()
    cfg["platformSecrets"] = {"registryUsername": "ci", "registryPassword": "long-enough-password"}
    cfg["plain_secrets"] = True
    with pytest.raises(ProgramFailed) as refused:
        run_program(cfg, stack=STACK)
    assert "bluegreen.platformSecrets: holds plain-text values" in str(refused.value)
    assert refused.value.resources == []


def test_site_credentials_replace_the_generated_ones():
    cfg = config()
    management = str(uuid.uuid4())
    cfg["platformSecrets"] = {"consulManagementToken": management, "registryUsername": "ci",
                              "registryPassword": "long-enough-password"}
    resources = run_program(cfg, stack=STACK)
    generated = [r.name for r in resources if r.type.endswith("platform:GeneratedSecret")]
    assert f"{STACK}-credentials-consul-gossip" in generated
    assert f"{STACK}-credentials-consul-management" not in generated
    assert f"{STACK}-credentials-registry-password" not in generated
    server = next(r for r in resources if r.type == CONTAINER and r.name.endswith("-consul-local"))
    assert f'"initial_management": "{management}"' in plain(server.inputs["uploads"])[0]["content"]
    registry = next(r for r in resources if r.type == CONTAINER and r.name.endswith("registry-container"))
    htpasswd = next(r for r in resources if r.type == HTPASSWD)
    assert (plain(htpasswd.inputs["username"]), plain(htpasswd.inputs["password"])) == (
        "ci", "long-enough-password")
    assert is_secret(htpasswd.inputs["password"])
    assert plain(registry.inputs["uploads"])[0]["content"] == f"entry-of-{htpasswd.name}"


# --- tokens are created or updated by name ----------------------------------------------------------

class FakeConsul:
    """Answers requests.request like Consul's ACL endpoints would, recording each call."""

    def __init__(self, token=None, policy=None):
        self.token, self.policy, self.calls = token, policy, []

    def __call__(self, method, url, timeout, headers, **kwargs):
        path = url.split("8500", 1)[1]
        self.calls.append((method, path))
        assert headers == {"X-Consul-Token": "management"}
        response = type("Response", (), {})()
        response.status_code, response.text, body = 200, "true", None
        if method == "GET" and path.startswith("/v1/acl/policy/name/"):
            body = self.policy
        elif method == "GET" and path.startswith("/v1/acl/token/"):
            body = self.token
        elif method == "PUT" and path == "/v1/acl/policy":
            body = {"ID": "new-policy"}
        if method == "GET" and body is None:
            response.status_code, response.text = 403, "ACL not found"
        response.json = lambda: body
        return response


def test_a_missing_token_is_created_with_its_stable_accessor(monkeypatch):
    fake = FakeConsul()
    monkeypatch.setattr(consul_api.requests, "request", fake)
    accessor = consul_api.acl_token_upsert("http://c:8500", "management", "bluegreen-proxy", "s-1",
                                           "bluegreen-proxy", "d")
    assert accessor == consul_api.accessor_id("bluegreen-proxy")
    assert fake.calls == [("GET", f"/v1/acl/token/{accessor}"), ("PUT", "/v1/acl/token")]
    assert consul_api.acl_policy_upsert("http://c:8500", "management", "p", "rules", "d") == "new-policy"


def test_an_existing_token_is_updated_or_replaced_when_its_secret_differs(monkeypatch):
    accessor = consul_api.accessor_id("bluegreen-proxy")
    same = FakeConsul(token={"AccessorID": accessor, "SecretID": "s-1"}, policy={"ID": "p-1"})
    monkeypatch.setattr(consul_api.requests, "request", same)
    consul_api.acl_token_upsert("http://c:8500", "management", "bluegreen-proxy", "s-1", "p", "d")
    consul_api.acl_policy_upsert("http://c:8500", "management", "p", "rules", "d")
    assert ("PUT", f"/v1/acl/token/{accessor}") in same.calls and ("PUT", "/v1/acl/policy/p-1") in same.calls
    other = FakeConsul(token={"AccessorID": accessor, "SecretID": "s-0"})
    monkeypatch.setattr(consul_api.requests, "request", other)
    consul_api.acl_token_upsert("http://c:8500", "management", "bluegreen-proxy", "s-1", "p", "d")
    assert other.calls[1:] == [("DELETE", f"/v1/acl/token/{accessor}"), ("PUT", "/v1/acl/token")]


# --- turning ACLs on for a running stack ----------------------------------------------------------

def test_a_colour_deployed_before_acls_keeps_its_containers_and_a_new_deploy_gets_the_token(monkeypatch):
    """The live colour runs as it was deployed before ACLs (its slot records the tokenless shape):
    it gets no token file, so nothing of it is replaced; the colour being deployed gets one."""
    from bluegreen.components.consul.records import ServiceRecords
    from bluegreen.components.service import colour_slot

    from test_wiring import _released
    tokenless_shapes = {}
    real_shape_of = colour_slot.shape_of

    def spy(args):
        shape = real_shape_of(args)
        if args.service_token is None:
            tokenless_shapes[args.colour] = shape
        return shape

    monkeypatch.setattr(colour_slot, "shape_of", spy)
    blue = _released("1.0.0", {})

    def deploy(recorded_shape, alias="blue"):
        records = {"vizconfig": ServiceRecords(releases={"1.0.0": blue}, slots={"blue": "1.0.0"},
                                               shapes={"blue": recorded_shape}, live=alias)}
        # The host with a bridge address: only there do containers read Consul.
        return Deployment(run_program(config(hosts=("local", "second"), live="blue"), stack=STACK,
                                      records=records))

    deploy("a shape from some other deployment", alias=None)   # learns blue's tokenless shape
    deployment = deploy(tokenless_shapes["blue"])
    containers = [c for c in deployment.role("service") if c.name.endswith("-second-0")]
    assert len(containers) == 2
    for container in containers:
        envs = container.inputs["envs"]
        has_token = "CONSUL_HTTP_TOKEN_FILE=/etc/bluegreen-consul-token" in json.dumps(envs)
        assert has_token == (container.label("bluegreen.colour") == "green"), container.name
        assert bool(container.inputs.get("uploads")) == has_token
    # A colour whose recorded shape is anything else gets the token (it is replaced: allowed
    # here only because the alias names no colour yet).
    assert all("CONSUL_HTTP_TOKEN_FILE" in json.dumps(c.inputs["envs"])
               for c in deploy("a shape from some other deployment", alias=None).role("service")
               if c.name.endswith("-second-0"))
