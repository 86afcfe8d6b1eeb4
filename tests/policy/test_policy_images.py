import pytest

from policies.rules.images import (check_dependency_image, check_service_image, image_problem,
                                   registry_of)
from policy_fakes import (DIGEST, IMAGE, UNKNOWN, dependency_container, platform_container,
                          run_resource_policy, service_container)


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
    from policies.rules import ALL_POLICIES
    from pulumi_policy import EnforcementLevel
    rule = next(p for p in ALL_POLICIES if p.name == "dependency-image-registry")
    assert rule.enforcement_level == EnforcementLevel.MANDATORY
    assert run_resource_policy("dependency-image-registry", service_container(image="redis:7")) == []
    assert run_resource_policy("dependency-image-registry",
                               platform_container("registry", image="registry:2")) == []
