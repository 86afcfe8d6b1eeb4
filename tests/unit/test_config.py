"""Stack configuration: the local stack parses; errors name stacks/Pulumi.<stack>.yaml, the field
(bluegreen.…) and what to do."""

import copy
import dataclasses
import os

import pytest
import yaml

from bluegreen.components.model.config import (
    ColourConfig,
    deployer_environments,
    ConsulSettings,
    Host,
    PlatformConfig,
    PrometheusSettings,
    ServiceConfig,
    StackConfig,
    parse_stack_config,
)
from bluegreen.components.model.validation import ConfigError
from bluegreen.components.model.vrrp import vrrp_environment
from bluegreen.components.naming import vrrp_router_id

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def stack_values(stack="local"):
    with open(os.path.join(ROOT, "stacks", f"Pulumi.{stack}.yaml"), encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    return {key.removeprefix("bluegreen:"): value for key, value in data["config"].items()
            if key.startswith("bluegreen:")}


# A stable copy of the local stack, independent of edits to its services section.
BASE = {
    "environment": "integration",
    "baseImage": "bluegreen/base:bookworm",
    "hosts": {
        "local": {"docker": "unix:///var/run/docker.sock", "consul": "http://127.0.0.1:18500",
                  "address": "127.0.0.1", "consulSerfPort": 18301, "consulServerPort": 18300},
        "second": {"docker": "unix:///run/bluegreen/second.sock", "consul": "http://127.0.0.1:28500"},
    },
    "platform": {
        "host": "local",
        "agents": ["second"],
        "consul": {"image": "bluegreen/consul:1.16.3"},
        "registry": {"image": "bluegreen/registry:2.8", "port": 15000},
        "proxy": {"image": "bluegreen/proxy:0.45.0", "port": 18080},
    },
    "services": {
        "vizconfig": {"manifest": "services/vizconfig/service.yaml", "live": "green",
                      "blue": {"version": "1.0.0"}, "green": {"version": "2.0.0", "env": {"A": 1}}},
    },
}


def values(**changes):
    """BASE with dotted-path changes: values(**{"services.vizconfig.live": "blue"}); None deletes."""
    result = copy.deepcopy(BASE)
    for path, value in changes.items():
        *parents, last = path.split(".")
        target = result
        for part in parents:
            target = target[part]
        if value is None:
            target.pop(last, None)
        else:
            target[last] = value
    return result


def parse(data, stack="integration"):
    return parse_stack_config(stack, data, ROOT)


# --- what parses ---------------------------------------------------------------------------------

def test_local_stack_file_parses():
    raw = stack_values("local")
    config = parse_stack_config("local", raw, ROOT)
    assert isinstance(config, StackConfig)
    assert config.source == "stacks/Pulumi.local.yaml"
    assert config.environment == raw["environment"]
    assert set(config.hosts) == set(raw["hosts"])
    assert config.platform is not None and config.platform_stack is None
    assert config.platform.host in config.hosts
    assert config.platform.registry_port == raw["platform"]["registry"]["port"]
    assert config.platform.proxy_port == raw["platform"]["proxy"]["port"]
    assert [s.name for s in config.services] == list(raw["services"])
    for service in config.services:
        settings = raw["services"][service.name]
        assert service.live == settings["live"]
        assert service.live in service.colours
        assert {c: v.version for c, v in service.colours.items()} == \
            {c: str(settings[c]["version"]) for c in ("blue", "green") if c in settings}
        assert os.path.isfile(service.manifest)
        assert os.path.isabs(service.manifest)


def test_base_values_parse_into_typed_objects():
    config = parse(values())
    assert config.environment == "integration"
    assert config.base_image == "bluegreen/base:bookworm"
    assert config.hosts["local"] == Host("local", "unix:///var/run/docker.sock", "http://127.0.0.1:18500",
                                         "127.0.0.1", 18301, 18300)
    assert config.hosts["second"] == Host("second", "unix:///run/bluegreen/second.sock",
                                          "http://127.0.0.1:28500", "127.0.0.1", 8301, 8300)
    assert config.platform == PlatformConfig(
        host="local", consul=ConsulSettings("bluegreen/consul:1.16.3", "dc1"),
        registry_image="bluegreen/registry:2.8", registry_port=15000,
        proxy_image="bluegreen/proxy:0.45.0", proxy_port=18080, agents=("second",))
    assert config.services == (ServiceConfig(
        name="vizconfig", manifest=os.path.join(ROOT, "services", "vizconfig", "service.yaml"),
        live="green",
        colours={"blue": ColourConfig("1.0.0"), "green": ColourConfig("2.0.0", {"A": "1"})},
        hosts=("local", "second"), replicas=1, gate_timeout_s=60),)


def test_the_proxy_drains_for_30s_unless_configured():
    assert parse(values()).platform.proxy_drain_s == 30.0
    assert parse(values(**{"platform.proxy.drainTimeout": "2m"})).platform.proxy_drain_s == 120.0


def test_preview_from_names_networks_beside_the_proxys_own_host():
    assert parse(values()).platform.proxy_preview_from == ()
    assert parse(values(**{"platform.proxy.previewFrom": ["10.250.77.1", "10.0.0.0/8"]})) \
        .platform.proxy_preview_from == ("10.250.77.1/32", "10.0.0.0/8")


def test_one_proxy_on_the_platform_host_unless_proxy_hosts_are_listed():
    config = parse(values()).platform
    assert config.proxy_host_names == ("local",) and config.proxy_virtual_address is None
    assert config.client_proxy_address == "127.0.0.1"
    two = parse(values(**{"platform.proxy.hosts": ["local", "second"],
                          "platform.proxy.virtualAddress": "10.0.0.100"})).platform
    assert two.proxy_host_names == ("local", "second")
    assert two.client_proxy_address == "10.0.0.100"
    # Each proxy reads Consul through its own host's agent.
    assert "second" in two.client_hosts


SITE = {"hosts.local.address": "10.0.0.1", "platform.proxy.hosts": ["local", "second"],
        "platform.proxy.virtualAddress": "10.0.0.100"}


def test_both_watchdogs_on_the_platform_host_unless_watchdog_hosts_are_listed():
    assert parse(values()).platform.watchdog_host_names == ("local", "local")
    apart = parse(values(**SITE, **{"platform.watchdogHosts": ["local", "second"]})).platform
    assert apart.watchdog_host_names == ("local", "second")


def test_the_platform_lists_the_environments_that_deploy_on_it():
    assert parse(values()).platform.environments == ()
    listed = parse(values(**{"platform.environments": ["integration", "production"]}))
    assert listed.platform.environments == ("integration", "production")
    # A stack owning its platform deploys its own environment first, each one once.
    assert deployer_environments(dataclasses.replace(listed, environment="production")) == \
        ("production", "integration")


def test_metrics_are_off_unless_a_port_is_given():
    platform = parse(values()).platform
    assert platform.proxy_metrics_port is None and platform.prometheus is None


def test_prometheus_keeps_7d_and_scrapes_every_5s_unless_configured():
    metrics = {"platform.proxy.metricsPort": 18090,
               "platform.prometheus": {"image": "bluegreen/prometheus:2.42.0", "port": 19090}}
    platform = parse(values(**metrics)).platform
    assert platform.proxy_metrics_port == 18090
    assert platform.prometheus == PrometheusSettings("bluegreen/prometheus:2.42.0", 19090, "7d", 5.0)
    metrics["platform.prometheus"] = {**metrics["platform.prometheus"], "retention": "12h",
                                      "scrapeInterval": "1s"}
    assert parse(values(**metrics)).platform.prometheus == \
        PrometheusSettings("bluegreen/prometheus:2.42.0", 19090, "12h", 1.0)


def test_the_local_stack_runs_prometheus_on_loopback():
    platform = parse_stack_config("local", stack_values("local"), ROOT).platform
    assert platform.prometheus is not None and platform.proxy_metrics_port
    assert platform.prometheus.image.startswith("bluegreen/prometheus:")


def test_platform_stack_instead_of_platform():
    # Pulumi.yaml's defaults ({} and "") mean "not set".
    config = parse(values(platform={}, platformStack="acme/bluegreen/platform", buildHost="local"))
    assert config.platform is None
    assert config.platform_stack == "acme/bluegreen/platform"
    assert config.build_host == "local"


def test_stack_without_services_needs_no_platform():
    config = parse(values(platform={}, services={}))
    assert config.platform is None and config.services == ()


def test_service_settings():
    config = parse(values(**{"services.vizconfig.hosts": ["second"], "services.vizconfig.replicas": 3,
                             "services.vizconfig.gateTimeout": 120, "services.vizconfig.blue": None,
                             "services.vizconfig.green": {"version": 7}}))
    service = config.services[0]
    assert service.hosts == ("second",)
    assert service.replicas == 3
    assert service.gate_timeout_s == 120
    assert service.colours == {"green": ColourConfig("7")}


def test_a_colours_instances_are_every_replica_on_every_host_with_that_hosts_agent():
    config = parse(values(**{"services.vizconfig.hosts": ["local", "second"],
                             "services.vizconfig.replicas": 2}))
    instances = config.colour_instances(config.services[0], "blue")
    assert instances == {
        "integration-vizconfig-blue-local-0": "http://127.0.0.1:18500",
        "integration-vizconfig-blue-local-1": "http://127.0.0.1:18500",
        "integration-vizconfig-blue-second-0": "http://127.0.0.1:28500",
        "integration-vizconfig-blue-second-1": "http://127.0.0.1:28500"}


def test_a_single_colour_can_be_live():
    config = parse(values(**{"services.vizconfig.live": "blue", "services.vizconfig.green": None}))
    assert config.services[0].live == "blue"
    assert list(config.services[0].colours) == ["blue"]


# --- errors --------------------------------------------------------------------------------------

PROMETHEUS = {"image": "bluegreen/prometheus:2.42.0", "port": 19090}

ERRORS = [
    # (changes to BASE, field, what the message tells the user)
    pytest.param({"services.vizconfig.live": "purple"}, "bluegreen.services.vizconfig.live",
                 "'purple' is not allowed; use one of: blue, green", id="bad-live-colour"),
    pytest.param({"services.vizconfig.live": None}, "bluegreen.services.vizconfig.live",
                 "is required (one of blue, green)", id="live-missing"),
    pytest.param({"services.vizconfig.hosts": ["local", "nowhere"]}, "bluegreen.services.vizconfig.hosts",
                 "must be a non-empty list of configured hosts: local, second", id="unknown-host"),
    pytest.param({"services.vizconfig.hosts": []}, "bluegreen.services.vizconfig.hosts",
                 "non-empty list", id="no-hosts-for-service"),
    pytest.param({"services.vizconfig.hosts": "local"}, "bluegreen.services.vizconfig.hosts",
                 "non-empty list", id="service-hosts-not-list"),
    pytest.param({"platform": {}}, "bluegreen.platform",
                 "set either platform (this stack owns the platform) or platformStack", id="no-platform"),
    pytest.param({"platform.host": "elsewhere"}, "bluegreen.platform.host",
                 "use one of: local, second", id="platform-unknown-host"),
    pytest.param({"platform.agents": ["local"]}, "bluegreen.platform.agents",
                 "must list other configured hosts (second)", id="agent-is-platform-host"),
    pytest.param({"platform.agents": ["ghost"]}, "bluegreen.platform.agents",
                 "must list other configured hosts", id="unknown-agent"),
    pytest.param({"platform.registry.port": 99999}, "bluegreen.platform.registry.port",
                 "allowed: 1..65535", id="registry-port"),
    pytest.param({"platform.proxy.image": None}, "bluegreen.platform.proxy.image", "is required",
                 id="proxy-image-missing"),
    pytest.param({"platform.proxy.listen": "0.0.0.0"}, "bluegreen.platform.proxy.listen",
                 "unknown key; allowed keys here are: image, port", id="unknown-proxy-key"),
    pytest.param({"platform.proxy.previewFrom": ["10.1.2.3/40"]}, "bluegreen.platform.proxy.previewFrom",
                 "is not a list of IPv4 networks; write e.g. [10.250.77.1/32]", id="preview-from-bad"),
    pytest.param({"platform.watchdogHosts": ["local"]}, "bluegreen.platform.watchdogHosts",
                 "must name 2 hosts that run a Consul agent of the platform (local, second), one per "
                 "watchdog", id="one-watchdog-host"),
    pytest.param({**SITE, "platform.agents": None, "platform.proxy.hosts": None,
                  "platform.proxy.virtualAddress": None, "platform.proxy.address": "10.0.0.1",
                  "platform.watchdogHosts": ["local", "second"]},
                 "bluegreen.platform.watchdogHosts", "run a Consul agent of the platform (local)",
                 id="watchdog-host-without-agent"),
    pytest.param({"platform.watchdogHosts": ["local", "second"]}, "bluegreen.platform.watchdogHosts",
                 "the proxy and Prometheus it asks listen on 127.0.0.1 there; keep both on local",
                 id="watchdog-off-a-loopback-platform"),
    pytest.param({"platform.proxy.hosts": ["local", "ghost"]}, "bluegreen.platform.proxy.hosts",
                 "must list configured hosts once each (local, second)", id="proxy-hosts-unknown"),
    pytest.param({"platform.proxy.hosts": ["local", "second"]}, "bluegreen.platform.proxy.virtualAddress",
                 "is required with two or more proxy hosts", id="proxy-hosts-without-address"),
    pytest.param({"platform.proxy.virtualAddress": "10.0.0.100"},
                 "bluegreen.platform.proxy.virtualAddress", "list them in proxy.hosts",
                 id="virtual-address-one-proxy"),
    pytest.param({"platform.proxy.hosts": ["local", "second"], "platform.proxy.address": "127.0.0.1",
                  "platform.proxy.virtualAddress": "10.0.0.100"}, "bluegreen.platform.proxy.address",
                 "clients use proxy.virtualAddress: remove it", id="proxy-address-with-several"),
    pytest.param({"platform.proxy.hosts": ["local", "second"],
                  "platform.proxy.virtualAddress": "127.0.0.1"},
                 "bluegreen.platform.proxy.virtualAddress", "is a host's own address",
                 id="virtual-address-of-a-host"),
    pytest.param({"platform.environments": "production"}, "bluegreen.platform.environments",
                 "is not a list of distinct environment names; write e.g. [integration, production]",
                 id="environments-not-a-list"),
    pytest.param({"platform.environments": ["prod", "prod"]}, "bluegreen.platform.environments",
                 "is not a list of distinct environment names", id="environments-twice"),
    pytest.param({"platform.environments": ["prod--a"]}, "bluegreen.platform.environments",
                 "'prod--a' is not an environment name (lower-case, e.g. staging; no '--')",
                 id="environments-joined-name"),
    pytest.param({"platform.proxy.drainTimeout": "30"}, "bluegreen.platform.proxy.drainTimeout",
                 "'30' is not a duration; write e.g. 500ms, 2s or 1m", id="drain-not-a-duration"),
    pytest.param({"platform.proxy.drainTimeout": "500ms"}, "bluegreen.platform.proxy.drainTimeout",
                 "'500ms' is out of range; allowed: 1s to 60m", id="drain-too-short"),
    pytest.param({"platform.prometheus": PROMETHEUS}, "bluegreen.platform.proxy.metricsPort",
                 "is not set, and bluegreen.platform.prometheus scrapes the proxy's metrics there: "
                 "set it to a free port, e.g. 18090", id="prometheus-without-proxy-metrics"),
    pytest.param({"platform.proxy.metricsPort": 18080}, "bluegreen.platform.proxy.metricsPort",
                 "is the proxy's own port 18080; give the metrics another port",
                 id="metrics-on-the-proxy-port"),
    pytest.param({"platform.proxy.metricsPort": 18090,
                  "platform.prometheus": {**PROMETHEUS, "retention": "7 days"}},
                 "bluegreen.platform.prometheus.retention",
                 "'7 days' is not allowed; hours, days or weeks, e.g. 12h, 7d or 2w",
                 id="prometheus-retention"),
    pytest.param({"platform.proxy.metricsPort": 18090,
                  "platform.prometheus": {**PROMETHEUS, "scrapeInterval": "5m"}},
                 "bluegreen.platform.prometheus.scrapeInterval",
                 "'5m' is out of range; allowed: 1s to 1m", id="prometheus-scrape-interval"),
    pytest.param({"platform.proxy.metricsPort": 18090,
                  "platform.prometheus": {"port": 19090}}, "bluegreen.platform.prometheus.image",
                 "is required", id="prometheus-image-missing"),
    pytest.param({"hosts": {}}, "bluegreen.hosts", "needs at least one host, e.g. local:",
                 id="no-hosts"),
    pytest.param({"hosts.Local": {"docker": "unix:///x", "consul": "http://y"}}, "bluegreen.hosts",
                 "host name 'Local' must be lower-case", id="bad-host-name"),
    pytest.param({"hosts.second.docker": "/var/run/docker.sock"}, "bluegreen.hosts.second.docker",
                 "unix:///path/docker.sock, ssh://user@host or tcp://host:2376", id="docker-url"),
    pytest.param({"hosts.second.consul": "127.0.0.1:8500"}, "bluegreen.hosts.second.consul",
                 "the agent's HTTP address, e.g. http://127.0.0.1:8500", id="consul-url"),
    pytest.param({"hosts.second.port": 1}, "bluegreen.hosts.second.port",
                 "unknown key; allowed keys here are: docker, consul, address", id="unknown-host-key"),
    pytest.param({"hosts.second.address": "10.0.0.5:80 down; server evil"},
                 "bluegreen.hosts.second.address", "the host's IPv4 address, e.g. 10.0.0.5",
                 id="host-address-not-an-address"),
    pytest.param({"hosts.second.consulSerfPort": "serf"}, "bluegreen.hosts.second.consulSerfPort",
                 "must be an integer", id="serf-port-type"),
    pytest.param({"environment": "Production"}, "bluegreen.environment",
                 "lower-case name such as integration or production", id="bad-environment"),
    pytest.param({"environment": None}, "bluegreen.environment", "is required", id="no-environment"),
    pytest.param({"environment": "prod--a"}, "bluegreen.environment",
                 "holds '--', which the proxy puts between environment and service names", id="environment-with-the-proxy-joiner"),
    pytest.param({"environment": "preview"}, "bluegreen.environment",
                 "'preview' is a path the proxy serves itself", id="environment-named-preview"),
    pytest.param({"services": {"a--b": BASE["services"]["vizconfig"]}}, "bluegreen.services.a--b",
                 "use single '-', e.g. 'a-b'", id="service-with-the-proxy-joiner"),
    pytest.param({"services": {"viz;config": BASE["services"]["vizconfig"]}}, "bluegreen.services",
                 "service name 'viz;config' is not allowed; lower-case letters", id="bad-service-name"),
    pytest.param({"colour": "blue"}, "bluegreen.colour",
                 "unknown key; allowed keys here are: environment, platformStack, baseImage", id="unknown-top-key"),
    pytest.param({"services.vizconfig.colour": "blue"}, "bluegreen.services.vizconfig.colour",
                 "unknown key; allowed keys here are: manifest, live, blue, green", id="unknown-service-key"),
    pytest.param({"services.vizconfig.blue.tag": "x"}, "bluegreen.services.vizconfig.blue.tag",
                 "unknown key; allowed keys here are: version, env, image", id="unknown-colour-key"),
    pytest.param({"services.vizconfig.blue.image": "x"}, "bluegreen.services.vizconfig.blue.image",
                 "a digest reference repository@sha256:<64 hex>", id="colour-image-not-a-digest"),
    pytest.param({"services.vizconfig.blue.version": "1.0/0"}, "bluegreen.services.vizconfig.blue.version",
                 "a version such as 1.4.2", id="bad-version"),
    pytest.param({"services.vizconfig.blue.version": None}, "bluegreen.services.vizconfig.blue.version",
                 "is required", id="colour-without-version"),
    pytest.param({"services.vizconfig.green.env": ["A=1"]}, "bluegreen.services.vizconfig.green.env",
                 "must be a mapping of names to values", id="colour-env-list"),
    pytest.param({"services.vizconfig.green.env": {"CONSUL_HTTP_ADDR": "http://evil:8500"}},
                 "bluegreen.services.vizconfig.green.env.CONSUL_HTTP_ADDR",
                 "is reserved (set by the platform in every container of the service)",
                 id="colour-env-reserved"),
    pytest.param({"services.vizconfig.maxMemory": "lots"}, "bluegreen.services.vizconfig.maxMemory",
                 "a size such as 128m or 1g", id="max-memory-not-a-size"),
    pytest.param({"services.vizconfig.replicas": 0}, "bluegreen.services.vizconfig.replicas",
                 "allowed: 1..20", id="zero-replicas"),
    pytest.param({"services.vizconfig.gateTimeout": 1}, "bluegreen.services.vizconfig.gateTimeout",
                 "allowed: 5..1800", id="gate-timeout"),
    pytest.param({"services.vizconfig.manifest": None}, "bluegreen.services.vizconfig.manifest",
                 "is required (path of the service repo's service.yaml)", id="manifest-missing"),
    pytest.param({"services.vizconfig": "yes"}, "bluegreen.services.vizconfig",
                 "must be a mapping, got str", id="service-not-mapping"),
    pytest.param({"services": ["vizconfig"]}, "bluegreen.services",
                 "must be a mapping of service name", id="services-list"),
]


@pytest.mark.parametrize("changes, field, advice", ERRORS)
def test_errors_name_stack_file_field_and_fix(changes, field, advice):
    with pytest.raises(ConfigError) as raised:
        parse(values(**changes), stack="integration")
    error = raised.value
    assert error.source == "stacks/Pulumi.integration.yaml"
    assert error.field == field
    assert str(error).startswith(f"stacks/Pulumi.integration.yaml: {field}: ")
    assert advice in str(error)


def test_live_colour_without_a_version_says_what_to_add():
    with pytest.raises(ConfigError) as raised:
        parse(values(**{"services.vizconfig.green": None}), stack="production")
    message = str(raised.value)
    assert message.startswith("stacks/Pulumi.production.yaml: bluegreen.services.vizconfig.")
    assert "live is green but no green version is configured" in message
    assert "add green: {version: ...} or make the other colour live" in message


def test_error_names_the_stack_being_deployed():
    with pytest.raises(ConfigError, match=r"^stacks/Pulumi\.prod-eu\.yaml: "):
        parse(values(environment="Prod"), stack="prod-eu")


def test_the_config_keys_are_the_ones_pulumi_yaml_declares():
    """Pulumi.yaml documents the keys (and gives their defaults); the program reads exactly those."""
    import os

    import yaml

    from bluegreen.components.model.config import OBJECT_KEYS, SECRET_KEYS, STRING_KEYS
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with open(os.path.join(root, "Pulumi.yaml"), encoding="utf-8") as handle:
        declared = yaml.safe_load(handle)["config"]
    types = {key.split(":", 1)[1]: spec["type"] for key, spec in declared.items()}
    assert types == {**{k: "string" for k in STRING_KEYS}, **{k: "object" for k in (*OBJECT_KEYS, *SECRET_KEYS)}}


def test_each_keepalived_prefers_the_first_proxy_host_and_talks_to_the_others():
    addresses = ["10.0.0.11", "10.0.0.12", "10.0.0.13"]
    second = vrrp_environment("platform", "10.0.0.100", addresses, 1, 18080)
    assert "VRRP_PEERS=10.0.0.11 10.0.0.13" in second and "VRRP_PRIORITY=190" in second
    assert "PROXY_HEALTH=http://10.0.0.12:18080/healthz" in second
    assert f"VRRP_ROUTER_ID={vrrp_router_id('platform')}" in second
    assert 1 <= vrrp_router_id("platform") <= 255
    with pytest.raises(ValueError, match="is a proxy host's own address"):
        vrrp_environment("platform", "10.0.0.11", addresses, 0, 18080)
    with pytest.raises(ValueError, match="distinct addresses"):
        vrrp_environment("platform", "10.0.0.100", ["10.0.0.11", "10.0.0.11"], 0, 18080)
