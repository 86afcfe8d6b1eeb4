import pytest

from bluegreen.policies.rules.images import (check_dependency_image, check_service_image, image_problem,
                                   registry_of)
from policy_fakes import (DIGEST, IMAGE, UNKNOWN, dependency_container, platform_container, resource,
                          run_resource_policy, service_container)

from bluegreen.policies.rules.common import REMOTE_IMAGE, parent_type, policy_config_file, stack_of


@pytest.mark.parametrize("repository, registry", [
    ("127.0.0.1:15000/vizconfig", "127.0.0.1:15000"),
    ("localhost:5000/team/app", "localhost:5000"),
    ("registry.example/app", "registry.example"),
    ("vizconfig", "docker.io"),
    ("library/redis", "docker.io"),
])
def test_registry_of(repository, registry):
    assert registry_of(repository) == registry


def test_digest_reference_from_loopback_registry_passes():
    assert image_problem(IMAGE, None) is None
    assert image_problem(f"localhost:5000/vizconfig@{DIGEST}", []) is None


@pytest.mark.parametrize("image", [
    "127.0.0.1:15000/vizconfig:1.0.0",
    "127.0.0.1:15000/vizconfig:latest",
    "127.0.0.1:15000/vizconfig",
    "127.0.0.1:15000/vizconfig@sha256:abc",
    "sha256:" + "a" * 64,
])
def test_moving_or_unpinned_references_fail(image):
    assert "not pinned by digest" in image_problem(image, None)


def test_digest_from_docker_hub_fails_without_config():
    problem = image_problem(f"vizconfig@{DIGEST}", None)
    assert "docker.io" in problem and "registries" in problem


def test_configured_registries_are_the_allow_list():
    assert image_problem(f"registry.example:5000/vizconfig@{DIGEST}",
                         ["registry.example:5000"]) is None
    assert "not an in-house registry" in image_problem(IMAGE, ["registry.example:5000"])


def test_unknown_image_is_checked_later():
    assert image_problem(UNKNOWN, None) is None


def test_check_only_applies_to_service_containers():
    assert check_service_image(platform_container("registry", image="registry:2"), {}) == []
    assert check_service_image(dependency_container(image="redis:7"), {}) == []
    assert check_service_image(service_container(image="redis:7"), {}) != []


def test_policy_reports_through_validate():
    assert run_resource_policy("service-image-pinned", service_container()) == []
    messages = run_resource_policy("service-image-pinned",
                                   service_container(image="127.0.0.1:15000/vizconfig:1.0.0"))
    assert len(messages) == 1
    assert "ServiceImage" in messages[0] and "production-vizconfig-blue-local-0" in messages[0]


def test_policy_reads_registries_from_config():
    box = service_container(image=f"registry.example:5000/vizconfig@{DIGEST}")
    assert run_resource_policy("service-image-pinned", box) != []
    assert run_resource_policy("service-image-pinned", box,
                               {"registries": ["registry.example:5000"]}) == []


def test_policy_passes_an_unknown_image_during_preview():
    assert run_resource_policy("service-image-pinned", service_container(image=UNKNOWN)) == []


def test_dependency_images_should_be_pinned():
    assert check_dependency_image(dependency_container(), {}) == []
    assert check_dependency_image(dependency_container(image=UNKNOWN), {}) == []
    assert check_service_image(service_container(), {}) == []
    messages = run_resource_policy("dependency-image-pinned", dependency_container(image="redis:7"))
    assert len(messages) == 1 and "redis:7" in messages[0] and "build:" in messages[0]


def test_a_dependency_image_from_an_unlisted_registry_is_refused():
    evil = dependency_container(image="evil.example.com/miner:latest")
    messages = run_resource_policy("dependency-image-registry", evil)
    assert len(messages) == 1 and "evil.example.com" in messages[0] and "build:" in messages[0]
    assert run_resource_policy("dependency-image-registry", dependency_container(image="redis:7")) != []
    assert run_resource_policy("dependency-image-registry", dependency_container()) == []
    assert run_resource_policy("dependency-image-registry", dependency_container(image=UNKNOWN)) == []
    listed = dependency_container(image=f"mirror.example:5000/redis@{DIGEST}")
    assert run_resource_policy("dependency-image-registry", listed) != []
    assert run_resource_policy("dependency-image-registry", listed,
                               {"registries": ["mirror.example:5000"]}) == []


def test_the_dependency_registry_rule_is_mandatory_and_leaves_other_containers_alone():
    from bluegreen.policies.rules import ALL_POLICIES
    from pulumi_policy import EnforcementLevel
    rule = next(p for p in ALL_POLICIES if p.name == "dependency-image-registry")
    assert rule.enforcement_level == EnforcementLevel.MANDATORY
    assert run_resource_policy("dependency-image-registry", service_container(image="redis:7")) == []
    assert run_resource_policy("dependency-image-registry",
                               platform_container("registry", image="registry:2")) == []


def test_a_refused_dependency_names_the_manifest_field_the_stacks_policy_file_and_the_fix():
    [message] = run_resource_policy("dependency-image-registry",
                                    dependency_container(image="evil.example.com/miner:latest"))
    assert "(dependencies.db)" in message and "service.yaml" in message and "build:" in message
    assert ('stacks/policy.production.json: {"dependency-image-registry": '
            '{"registries": [..., "evil.example.com"]}}') in message


def pull(name: str, image, parent_path: str, **props) -> dict:
    return resource(REMOTE_IMAGE, name, {"name": image, "keepLocally": True, **props},
                    type_path=f"{parent_path}$docker:index/remoteImage:RemoteImage")


SERVICE_PATH = "bluegreen:service:Service"


def test_a_dependency_image_from_an_unlisted_registry_is_not_even_pulled():
    """Its pull (a RemoteImage under the Service) runs before its container, so refusing only
    the container would leave the image pulled onto every host."""
    evil = pull("production-vizconfig-db-local-pull", "evil.example.com/miner:latest", SERVICE_PATH)
    [message] = run_resource_policy("dependency-image-registry", evil)
    assert "the pull of dependency image production-vizconfig-db-local-pull" in message
    assert "stacks/policy.production.json" in message
    built = pull("production-vizconfig-db-local-pull", f"127.0.0.1:15000/vizconfig-db@{DIGEST}",
                 SERVICE_PATH)
    assert run_resource_policy("dependency-image-registry", built) == []
    assert run_resource_policy("dependency-image-registry",
                               pull("p", UNKNOWN, SERVICE_PATH)) == []
    assert run_resource_policy("dependency-image-registry", evil,
                               {"registries": ["evil.example.com"]}) == []


def test_the_pulls_of_a_services_own_images_are_left_to_service_image_pinned():
    slot = pull("production-vizconfig-blue-local-image", "registry.example:5000/v@" + DIGEST,
                f"{SERVICE_PATH}$bluegreen:service:ColourSlot")
    build = pull("production-vizconfig-image-build", "registry.example:5000/v:1.0.0",
                 f"{SERVICE_PATH}$bluegreen:service:ServiceImage", build={"context": "."})
    for other in (slot, build):
        assert run_resource_policy("dependency-image-registry", other) == []


def test_a_refused_service_image_names_the_stacks_policy_file():
    [message] = run_resource_policy("service-image-pinned", service_container(
        image=f"registry.example:5000/vizconfig@{DIGEST}"))
    assert 'stacks/policy.production.json, e.g. {"service-image-pinned": ' in message
    [listed] = run_resource_policy("service-image-pinned", service_container(
        image=f"registry.example:5000/vizconfig@{DIGEST}"), {"registries": ["mirror.example"]})
    assert '"registries": [..., "registry.example:5000"]' in listed


def test_urn_parts():
    urn = "urn:pulumi:e2e-lab::bluegreen::bluegreen:service:Service$docker:index/remoteImage:RemoteImage::x"
    assert (stack_of(urn), parent_type(urn)) == ("e2e-lab", SERVICE_PATH)
    assert policy_config_file(urn) == "stacks/policy.e2e-lab.json"
    assert parent_type("urn:pulumi:s::p::docker:index/container:Container::c") == ""
