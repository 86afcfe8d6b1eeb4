"""`remove`'s pure parts: which image names go, and when it is refused."""

from __future__ import annotations

from bluegreen.delivery.remove import RemovePlan, describe, image_names, why_not

REGISTRY = "127.0.0.1:15000"
REPOSITORIES = (f"{REGISTRY}/vizconfig", f"{REGISTRY}/vizconfig-db")


def plan(others=()) -> RemovePlan:
    return RemovePlan("vizconfig", "local", tuple(others), REPOSITORIES,
                      ("unix:///var/run/docker.sock",), has_secrets=False)


def test_only_the_names_of_the_services_repositories_go():
    inspected = [
        {"RepoDigests": [f"{REGISTRY}/vizconfig@sha256:{'a' * 64}", f"mirror.example/vizconfig@sha256:{'a' * 64}"],
         "RepoTags": [f"{REGISTRY}/vizconfig:1.0.0", "vizconfig:dev"]},
        {"RepoDigests": [f"{REGISTRY}/vizconfig-db@sha256:{'b' * 64}"], "RepoTags": None},
        {"RepoDigests": [f"{REGISTRY}/vizconfigurator@sha256:{'c' * 64}"], "RepoTags": []},
    ]
    assert image_names(inspected, REPOSITORIES) == [
        f"{REGISTRY}/vizconfig@sha256:{'a' * 64}", f"{REGISTRY}/vizconfig:1.0.0",
        f"{REGISTRY}/vizconfig-db@sha256:{'b' * 64}"]


def test_refused_while_another_stack_deploys_it_unless_forced():
    assert "still runs in production; --force" in why_not(plan(["production"]), False, False)
    assert why_not(plan(["production"]), False, True) is None
    assert "its releases are shared" in why_not(plan(["production"]), True, True)
    assert why_not(plan(), True, False) is None


def test_it_says_what_goes():
    assert "its images stay: it still runs in production" in describe(plan(["production"]), False)[1]
    lines = describe(plan(), True)
    assert REPOSITORIES[0] in lines[1] and "--purge-releases" in lines[2]
