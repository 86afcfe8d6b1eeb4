"""Scale: network capacity per host (address pools, which services get a private network, the
refusal before anything deploys) and service stacks that inherit their environment stack."""

import copy
import os
import shutil

import pytest
import yaml

from bluegreen.components.model.config import parse_stack_config, stack_values
from bluegreen.components.model.validation import ConfigError
from bluegreen.components.platform.address_pools import (
    BUILTIN_POOLS, EngineNetworks, check_capacity, new_networks, pool_capacity,
    private_network_hosts
)
from unit_harness import PLATFORM_CREDENTIALS, ROOT, ProgramFailed, engine_networks, run_program

NETWORK = "docker:index/network:Network"
CONTAINER = "docker:index/container:Container"


# --- address pools ------------------------------------------------------------------------------

def test_dockers_own_pools_hold_31_networks():
    assert pool_capacity(BUILTIN_POOLS) == 31
    # docker0 takes one of them.
    assert EngineNetworks(None, frozenset({"bridge"})).free == 30


@pytest.mark.parametrize("pools, capacity", [
    ([{"Base": "172.20.0.0/14", "Size": 24}], 1024),
    ([{"Base": "172.30.0.0/16", "Size": 24}], 256),
    ([{"Base": "10.10.0.0/16", "Size": 24}, {"Base": "10.11.0.0/16", "Size": 26}], 256 + 1024),
    ([{"Base": "192.168.0.0/16", "Size": 16}], 1),
])
def test_pool_capacity(pools, capacity):
    assert pool_capacity(pools) == capacity
    assert EngineNetworks(tuple(pools), frozenset()).free == capacity


def test_a_pool_smaller_than_its_size_is_an_error():
    with pytest.raises(ValueError, match="172.20.0.0/24"):
        pool_capacity([{"Base": "172.20.0.0/24", "Size": 16}])


def test_free_never_goes_below_zero():
    engine = EngineNetworks(({"Base": "172.20.0.0/24", "Size": 24},), frozenset({"bridge", "a", "b"}))
    assert engine.free == 0


def test_only_networks_in_the_pools_count_against_them():
    pools = ({"Base": "172.20.0.0/14", "Size": 24},)
    engine = EngineNetworks(pools, frozenset({"bridge", "a", "b", "c"}), {
        "bridge": ("172.17.0.0/16",),       # the default bridge, from `bip`: not a pool's
        "a": ("172.20.1.0/24",),            # made from the pool
        "b": ("10.99.0.0/24",),             # made with a subnet of its own elsewhere
        "c": ("172.21.255.0/24", "fd00::/64")})
    assert engine.used == 2 and engine.free == 1024 - 2
    # Docker's own pools hold 172.17.0.0/16: there the default bridge does take one.
    builtin = EngineNetworks(None, frozenset({"bridge"}), {"bridge": ("172.17.0.0/16",)})
    assert builtin.used == 1 and builtin.free == 30


def engines(**bridges):
    return {host: EngineNetworks(None, frozenset({"bridge", *names})) for host, names in bridges.items()}


def test_only_services_with_dependencies_need_a_network():
    found = engines(local=[], host2=[])
    assert private_network_hosts("prod", "api", ("local", "host2"), True, found) == ("local", "host2")
    assert private_network_hosts("prod", "api", ("local", "host2"), False, found) == ()


def test_an_existing_network_is_kept_so_nothing_running_is_replaced():
    found = engines(local=["bluegreen-prod-api"], host2=[])
    assert private_network_hosts("prod", "api", ("local", "host2"), False, found) == ("local",)


def test_networks_that_exist_are_not_new():
    found = engines(local=["bluegreen-prod-a"], host2=[])
    wanted = {"local": {"bluegreen-prod-a", "bluegreen-prod-b"}, "host2": {"bluegreen-prod-a"}}
    assert new_networks(wanted, found) == {"local": 1, "host2": 1}


def test_capacity_refusal_names_host_room_need_and_fix():
    found = {"local": EngineNetworks(None, frozenset({"bridge", *(f"n{i}" for i in range(28))}))}
    check_capacity("stacks/Pulumi.production.yaml", {"local": 2}, found)   # exactly full is fine
    with pytest.raises(ConfigError) as raised:
        check_capacity("stacks/Pulumi.production.yaml", {"local": 3}, found)
    error = raised.value
    assert error.source == "stacks/Pulumi.production.yaml"
    assert error.field == "bluegreen.hosts.local"
    assert "host local can make 2 more network(s)" in error.problem
    assert "(29 of 31 in use)" in error.problem and "needs 3 new one(s)" in error.problem
    assert "/etc/docker/daemon.json" in error.problem and "default-address-pools" in error.problem


# --- the program: networks ----------------------------------------------------------------------

# An environment stack on two hosts of this machine (what stacks/Pulumi.production.yaml held
# before the lab): the tests below must not follow the committed stacks' host names.
PRODUCTION_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "test_scale_data_production.yaml")


def production_values() -> dict:
    with open(PRODUCTION_FILE, encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    return {key.split(":", 1)[1]: value for key, value in data["config"].items()
            if key.startswith("bluegreen:")}


def plain_manifest(directory, name="plain"):
    """A service without dependencies."""
    (directory / "Dockerfile").write_text("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n")
    path = directory / "service.yaml"
    path.write_text(f"name: {name}\ndescription: no dependencies\nbuild: {{context: .}}\nport: 8000\n"
                    f"health: {{path: /health}}\nroute: {name}\nmemory: 32m\n")
    return str(path)


def referencing(services, environment="production"):
    return {
        "environment": environment,
        "platformStack": "organization/bluegreen/platform",
        "buildHost": "local",
        "hosts": {"local": {"docker": "unix:///var/run/docker.sock", "consul": "http://127.0.0.1:19500"},
                  "host2": {"docker": "unix:///var/run/bluegreen-host2.sock",
                            "consul": "http://127.0.0.1:19510"}},
        "services": services,
    }


PLATFORM = {**PLATFORM_CREDENTIALS, "registry": "127.0.0.1:19005", "proxy": "http://127.0.0.1:19080"}


def service_entry(manifest, hosts=("local", "host2")):
    return {"manifest": manifest, "hosts": list(hosts), "live": "blue", "blue": {"version": "1.0.0"}}


def test_a_service_without_dependencies_runs_on_the_default_bridge(tmp_path):
    resources = run_program(referencing({"plain": service_entry(plain_manifest(tmp_path))}),
                            stack="production", stack_outputs=PLATFORM)
    assert not [r for r in resources if r.type == NETWORK]
    containers = [r for r in resources if r.type == CONTAINER]
    assert len(containers) == 2 and not any(c.inputs.get("networksAdvanced") for c in containers)


def test_a_service_keeps_the_network_it_has(tmp_path):
    found = {"local": engine_networks(bridges=("bridge", "bluegreen-production-plain")),
             "host2": engine_networks()}
    resources = run_program(referencing({"plain": service_entry(plain_manifest(tmp_path))}),
                            stack="production", stack_outputs=PLATFORM, engines=found)
    [network] = [r for r in resources if r.type == NETWORK]
    assert network.inputs["name"] == "bluegreen-production-plain"
    joined = {c.name: c.inputs.get("networksAdvanced") for c in resources if c.type == CONTAINER}
    assert joined["production-plain-blue-local-0"][0]["name"] == "bluegreen-production-plain"
    assert not joined["production-plain-blue-host2-0"]


def test_the_example_services_resources_are_unchanged():
    """A service with dependencies keeps its network per host under the same name: existing
    stacks see no change."""
    resources = run_program(production_values(), stack="production", stack_outputs=PLATFORM)
    networks = [r for r in resources if r.type == NETWORK]
    assert sorted(n.name for n in networks) == ["production-vizconfig-host2-network",
                                                 "production-vizconfig-local-network"]
    assert {n.inputs["name"] for n in networks} == {"bluegreen-production-vizconfig"}
    containers = [r for r in resources if r.type == CONTAINER]
    assert sorted(c.name for c in containers) == sorted(
        [f"production-vizconfig-{c}-{h}-0" for c in ("blue", "green") for h in ("local", "host2")]
        + ["production-vizconfig-db-local", "production-vizconfig-db-host2"])
    for container in containers:
        assert container.inputs["networksAdvanced"][0]["name"] == "bluegreen-production-vizconfig"


def test_a_full_host_refuses_the_update_before_anything_registers():
    full = {"local": engine_networks(pools=[{"Base": "172.20.0.0/23", "Size": 24}],
                                     bridges=("bridge", "other")),
            "host2": engine_networks()}
    with pytest.raises(ProgramFailed) as raised:
        run_program(production_values(), stack="production", stack_outputs=PLATFORM,
                    engines=full)
    message = str(raised.value)
    assert "stacks/Pulumi.production.yaml: bluegreen.hosts.local:" in message
    assert "can make 0 more network(s)" in message and "needs 1 new one(s)" in message
    assert "default-address-pools" in message
    assert raised.value.resources == []


def test_a_host_with_the_network_already_needs_no_room():
    full = {"local": engine_networks(pools=[{"Base": "172.20.0.0/24", "Size": 24}],
                                     bridges=("bridge", "bluegreen-production-vizconfig")),
            "host2": engine_networks()}
    run_program(production_values(), stack="production", stack_outputs=PLATFORM, engines=full)


# --- service stacks -----------------------------------------------------------------------------

@pytest.fixture
def project(tmp_path):
    """A project directory: Pulumi.yaml and the committed stack files."""
    shutil.copy(os.path.join(ROOT, "Pulumi.yaml"), tmp_path / "Pulumi.yaml")
    shutil.copytree(os.path.join(ROOT, "stacks"), tmp_path / "stacks")
    shutil.copy(PRODUCTION_FILE, tmp_path / "stacks" / "Pulumi.production.yaml")
    (tmp_path / "svc").mkdir()
    plain_manifest(tmp_path / "svc")
    return tmp_path


def write_stack(project, stack, values):
    with open(project / "stacks" / f"Pulumi.{stack}.yaml", "w", encoding="utf-8") as handle:
        yaml.safe_dump({"config": {f"bluegreen:{k}": v for k, v in values.items()}}, handle)


def service_stack(**extra):
    return {"environmentStack": "production",
            "services": {"plain": service_entry("svc/service.yaml")}, **extra}


def test_a_service_stack_inherits_its_environment_stack(project):
    values = stack_values("production.plain", service_stack(), str(project))
    config = parse_stack_config("production.plain", values, str(project))
    production = parse_stack_config("production", production_values(), ROOT)
    assert config.environment == "production" and config.environment_stack == "production"
    assert config.hosts == production.hosts and config.build_host == "local"
    assert config.platform_stack == "organization/bluegreen/platform" and config.platform is None
    assert config.base_image == production.base_image
    assert [s.name for s in config.services] == ["plain"]
    assert config.source == "stacks/Pulumi.production.plain.yaml"


def test_an_environment_stack_is_left_as_it_is(project):
    raw = production_values()
    assert stack_values("production", raw, str(project)) == raw


def test_project_defaults_in_a_service_stack_count_as_unset(project):
    """The program's pulumi.Config hands Pulumi.yaml's defaults for keys the file does not set."""
    values = service_stack(environment="", hosts={}, platformStack="", buildHost="",
                           baseImage="debian:bookworm-slim", platform={})
    assert stack_values("production.plain", values, str(project))["environment"] == "production"


@pytest.mark.parametrize("change, field, fix", [
    ({"environmentStack": "staging"}, "bluegreen.environmentStack",
     "stacks/Pulumi.staging.yaml does not exist"),
    ({"environmentStack": "local"}, "bluegreen.environmentStack",
     "local is not an environment stack on a shared platform"),
    ({"environmentStack": "bad name!"}, "bluegreen.environmentStack", "is not a stack name"),
    ({"hosts": {"x": {"docker": "unix:///x", "consul": "http://x:1"}}}, "bluegreen.hosts",
     "a service stack takes this from stacks/Pulumi.production.yaml; remove it here"),
    ({"environment": "prod2"}, "bluegreen.environment", "takes this from stacks/Pulumi.production.yaml"),
    ({"baseImage": "other:1"}, "bluegreen.baseImage", "takes this from stacks/Pulumi.production.yaml"),
])
def test_service_stack_errors_name_file_field_and_fix(project, change, field, fix):
    with pytest.raises(ConfigError) as raised:
        stack_values("production.plain", service_stack(**change), str(project))
    assert raised.value.source == "stacks/Pulumi.production.plain.yaml"
    assert raised.value.field == field
    assert fix in raised.value.problem


def test_a_service_stack_of_a_service_stack_is_refused(project):
    write_stack(project, "production.plain", service_stack())
    with pytest.raises(ConfigError) as raised:
        stack_values("production.other", {"environmentStack": "production.plain"}, str(project))
    assert "is a service stack itself" in raised.value.problem
    assert "name its environment stack production instead" in raised.value.problem


def test_a_service_in_both_stacks_is_refused_naming_both_files(project):
    both = service_stack(services={"vizconfig": service_entry("services/vizconfig/service.yaml")})
    with pytest.raises(ConfigError) as raised:
        stack_values("production.vizconfig", both, str(project))
    assert raised.value.source == "stacks/Pulumi.production.vizconfig.yaml"
    assert raised.value.field == "bluegreen.services.vizconfig"
    assert "stacks/Pulumi.production.yaml" in raised.value.problem
    # And the environment stack's own program refuses it too.
    write_stack(project, "production.vizconfig", both)
    with pytest.raises(ConfigError) as raised:
        stack_values("production", production_values(), str(project))
    assert raised.value.source == "stacks/Pulumi.production.yaml"
    assert raised.value.field == "bluegreen.services.vizconfig"
    assert "stacks/Pulumi.production.vizconfig.yaml" in raised.value.problem


def test_an_invalid_environment_stack_is_named_in_the_error(project):
    production = production_values()
    production["hosts"]["local"]["docker"] = "nowhere"
    write_stack(project, "production", production)
    with pytest.raises(ConfigError) as raised:
        stack_values("production.plain", service_stack(), str(project))
    assert raised.value.source == "stacks/Pulumi.production.yaml"
    assert raised.value.field == "bluegreen.hosts.local.docker"


def test_a_service_stack_deploys_only_its_own_services(project):
    write_stack(project, "production.plain", service_stack())
    cfg = service_stack()
    resources = run_program(copy.deepcopy(cfg), stack="production.plain", root=str(project),
                            stack_outputs=PLATFORM)
    services = {r.name for r in resources if r.type == "bluegreen:service:Service"}
    assert services == {"production-plain"}
    reference = [r for r in resources if r.type == "pulumi:pulumi:StackReference"]
    assert reference[0].inputs["name"] == "organization/bluegreen/platform"
    hosts = {r.inputs["payload"]["Meta"]["host"] for r in resources
             if r.type.endswith("consul:Registration")}
    assert hosts == {"local", "host2"}


def test_a_service_stack_error_registers_nothing(project):
    with pytest.raises(ProgramFailed) as raised:
        run_program(service_stack(hosts={"x": {"docker": "unix:///x", "consul": "http://x:1"}}),
                    stack="production.plain", root=str(project), stack_outputs=PLATFORM)
    assert "stacks/Pulumi.production.plain.yaml: bluegreen.hosts:" in str(raised.value)
    assert raised.value.resources == []


def test_delivery_commands_find_the_service_stack_of_an_environment(project):
    from bluegreen.delivery.stacks import stack_for_service

    write_stack(project, "production.plain", service_stack())
    root = str(project)
    assert stack_for_service("production", "plain", root) == "production.plain"
    assert stack_for_service("organization/bluegreen/production", "plain", root) == "production.plain"
    assert stack_for_service("production", "vizconfig", root) == "production"
    assert stack_for_service("production.plain", "plain", root) == "production.plain"
    assert stack_for_service("integration", "plain", root) == "integration"


def test_a_service_stack_names_providers_and_labels_containers_as_its_environment_stack(project):
    resources = run_program(service_stack(), stack="production.plain", root=str(project),
                            stack_outputs=PLATFORM)
    providers = sorted(r.name for r in resources if r.type == "pulumi:providers:docker")
    assert providers == ["production-host-host2", "production-host-local"]
    containers = [r for r in resources if r.type == CONTAINER]
    assert containers and {c.label("bluegreen.stack") for c in containers} == {"production"}
