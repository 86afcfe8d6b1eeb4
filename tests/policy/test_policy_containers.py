import pytest

from bluegreen.policies.rules.containers import (check_host_ports, check_memory, check_restart,
                                       check_service_labels)
from policy_fakes import (UNKNOWN, dependency_container, labels, platform_container, resource,
                          run_resource_policy, service_container)


# --- service-container-labels ---------------------------------------------------------------------
def test_labelled_service_container_passes():
    assert check_service_labels(service_container(), {}) == []
    assert run_resource_policy("service-container-labels", service_container()) == []


def test_missing_labels_are_named():
    box = service_container(labels=labels(role="service", service="vizconfig"))
    [message] = run_resource_policy("service-container-labels", box)
    assert "bluegreen.environment" in message and "bluegreen.instance" in message
    assert "ColourSlot" in message


def test_instance_must_name_environment_service_and_colour():
    box = service_container()
    for item in box["props"]["labels"]:
        if item["label"] == "bluegreen.instance":
            item["value"] = "production-vizconfig-green-local-0"
    [message] = check_service_labels(box, {})
    assert "production-vizconfig-blue-" in message and "instance_id" in message


def test_labels_rule_ignores_other_containers():
    assert check_service_labels(platform_container("proxy"), {}) == []
    assert check_service_labels(dependency_container(), {}) == []
    assert check_service_labels(resource("docker:index/network:Network", "n", {}), {}) == []


# --- no-fixed-host-ports -------------------------------------------------------------------------
def test_docker_assigned_ports_pass():
    assert check_host_ports(service_container(), {}) == []
    assert check_host_ports(service_container(ports=[{"internal": 8000, "external": UNKNOWN}]), {}) == []
    assert run_resource_policy("no-fixed-host-ports", service_container()) == []


def test_fixed_host_port_fails_for_services_and_dependencies():
    fixed = [{"internal": 8000.0, "external": 18000.0, "ip": "127.0.0.1"}]
    [message] = run_resource_policy("no-fixed-host-ports", service_container(ports=fixed))
    assert "internal port 8000 on fixed host port 18000" in message
    assert "Leave `external` unset" in message
    assert check_host_ports(dependency_container(ports=fixed), {}) != []


def test_host_network_fails_for_services():
    [message] = check_host_ports(service_container(networkMode="host", ports=[]), {})
    assert "host network" in message


@pytest.mark.parametrize("role", ["consul-server", "consul-client", "registry", "proxy"])
def test_platform_publishes_known_ports(role):
    box = platform_container(role, networkMode="host")
    assert check_host_ports(box, {}) == []
    assert run_resource_policy("no-fixed-host-ports", box) == []


def test_unlabelled_container_may_not_publish_fixed_ports():
    box = resource("docker:index/container:Container", "stray",
                   {"ports": [{"internal": 80, "external": 8080}], "memory": 64,
                    "restart": "always"})
    [message] = check_host_ports(box, {})
    assert message.startswith("unlabelled container stray")


# --- container-memory-limit / container-restart-policy -------------------------------------------
@pytest.mark.parametrize("make", [service_container, dependency_container,
                                  lambda **kw: platform_container("proxy", **kw)])
def test_every_container_has_memory_and_restart(make):
    assert check_memory(make(), {}) == []
    assert check_restart(make(), {}) == []
    assert run_resource_policy("container-memory-limit", make(memory=0)) != []
    assert run_resource_policy("container-restart-policy", make(restart="no")) != []


def test_missing_memory_limit_says_how_to_fix():
    box = service_container()
    del box["props"]["memory"]
    [message] = run_resource_policy("container-memory-limit", box)
    assert "no memory limit" in message and "memory:" in message
    assert check_memory(service_container(memory=UNKNOWN), {}) == []


@pytest.mark.parametrize("restart", ["always", "unless-stopped", "on-failure"])
def test_restart_policies_that_keep_a_colour_warm(restart):
    assert check_restart(service_container(restart=restart), {}) == []


def test_missing_restart_policy_says_how_to_fix():
    box = service_container()
    del box["props"]["restart"]
    [message] = run_resource_policy("container-restart-policy", box)
    assert "restart policy none" in message and 'restart="unless-stopped"' in message
    [message] = check_restart(service_container(restart="no"), {})
    assert "restart policy 'no'" in message


# --- service-container-hardened -------------------------------------------------------------------
HARDENED = {"capabilities": {"drops": ["ALL"]}, "securityOpts": ["no-new-privileges:true"]}


def test_a_hardened_service_container_passes():
    assert run_resource_policy("service-container-hardened", service_container(**HARDENED)) == []
    assert run_resource_policy("service-container-hardened",
                               service_container(capabilities=UNKNOWN, securityOpts=UNKNOWN)) == []


@pytest.mark.parametrize("changes", [{"capabilities": None}, {"securityOpts": None},
                                     {"capabilities": {"drops": ["NET_RAW"]}},
                                     {"securityOpts": ["seccomp=unconfined"]}])
def test_a_service_container_with_capabilities_or_privilege_gain_is_reported(changes):
    [message] = run_resource_policy("service-container-hardened", service_container(**{**HARDENED, **changes}))
    assert "SERVICE_HARDENING" in message


def test_hardening_is_advisory_and_only_for_service_containers():
    from bluegreen.policies.rules import ALL_POLICIES
    from pulumi_policy import EnforcementLevel
    rule = next(p for p in ALL_POLICIES if p.name == "service-container-hardened")
    assert rule.enforcement_level == EnforcementLevel.ADVISORY
    assert run_resource_policy("service-container-hardened", dependency_container()) == []
    assert run_resource_policy("service-container-hardened", platform_container("proxy")) == []


def test_every_role_the_platform_gives_its_containers_is_a_platform_role():
    """A platform container the pack took for a team's (the delivery exporter on the host network)
    failed every `pulumi up` of a stack that owns its platform."""
    import glob
    import os
    import re

    from bluegreen.policies.rules.common import PLATFORM_ROLES
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    roles = set()
    for path in glob.glob(os.path.join(root, "components", "platform", "*.py")):
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
        roles.update(re.findall(r'role="([a-z-]+)"', text))
    assert roles and roles <= PLATFORM_ROLES, roles - PLATFORM_ROLES


# --- container-no-added-privileges ----------------------------------------------------------------
@pytest.mark.parametrize("changes, named", [
    ({"privileged": True}, "privileged: true"),
    ({"capabilities": {"adds": ["NET_ADMIN"], "drops": ["ALL"]}}, "capabilities.adds: ['NET_ADMIN']"),
    ({"securityOpts": ["no-new-privileges:true", "seccomp=unconfined"]}, "security_opts: seccomp=unconfined"),
    ({"securityOpts": ["apparmor:unconfined"]}, "security_opts: apparmor:unconfined"),
    ({"pidMode": "host"}, "pidMode: host"),
    ({"usernsMode": "host"}, "usernsMode: host"),
    ({"volumes": [{"hostPath": "/var/run/docker.sock", "containerPath": "/s"}]}, "a mount of /var/run/docker.sock"),
    ({"mounts": [{"source": "/run/docker.sock", "target": "/s", "type": "bind"}]}, "a mount of /run/docker.sock"),
    ({"devices": [{"hostPath": "/dev/kmsg"}]}, "device /dev/kmsg"),
])
def test_a_service_or_dependency_with_added_privileges_is_refused(changes, named):
    for box in (service_container(**{**HARDENED, **changes}), dependency_container(**changes)):
        [message] = run_resource_policy("container-no-added-privileges", box)
        assert named in message and "SERVICE_HARDENING" in message, message


def test_confinement_as_the_program_makes_it_passes_and_the_platform_is_left_alone():
    assert run_resource_policy("container-no-added-privileges", service_container(**HARDENED)) == []
    assert run_resource_policy("container-no-added-privileges", service_container()) == []
    assert run_resource_policy("container-no-added-privileges", dependency_container(
        volumes=[{"volumeName": "production-vizconfig-db", "containerPath": "/data"}])) == []
    assert run_resource_policy("container-no-added-privileges", service_container(
        capabilities=UNKNOWN, securityOpts=UNKNOWN, volumes=UNKNOWN)) == []
    registrator = platform_container("registrator", volumes=[
        {"hostPath": "/var/run/docker.sock", "containerPath": "/var/run/docker.sock"}])
    assert run_resource_policy("container-no-added-privileges", registrator) == []


def test_added_privileges_are_mandatory():
    from bluegreen.policies.rules import ALL_POLICIES
    from pulumi_policy import EnforcementLevel
    rule = next(p for p in ALL_POLICIES if p.name == "container-no-added-privileges")
    assert rule.enforcement_level == EnforcementLevel.MANDATORY
