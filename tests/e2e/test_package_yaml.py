"""The component package from another Pulumi language: examples/yaml (Pulumi YAML) deploys a
platform and vizconfig with bluegreen:Platform and bluegreen:Service, the stable URI answers
through the proxy, and a second update flips to green under load without a failed request."""

from __future__ import annotations

import os
import time

import pytest

from e2e_harness import REPO, RequestLoop, deployed, get_json, platform_config, wait_until

STACK = ENV = "e2e-yaml"
PORTS = {"consul": 29810, "serf": 29811, "server": 29812, "registry": 29813, "proxy": 29814}
PROXY = f"http://127.0.0.1:{PORTS['proxy']}"
STABLE = f"{PROXY}/{ENV}/vizconfig/"
EXAMPLE = os.path.join(REPO, "examples", "yaml")
PROJECT = "bluegreen-yaml-example"
FIGURES: dict = {}


def vizconfig(**overrides) -> dict:
    return {"manifest": "services/vizconfig/service.yaml", "live": "blue",
            "blue": {"version": "1.0.0"}, "gateTimeout": 60, **overrides}


def example_config() -> dict:
    """The example's config: the objects a Python stack holds under bluegreen:*, here under the
    YAML project's own keys."""
    python_stack = platform_config(PORTS, ENV, environments=(ENV,))
    return {f"{PROJECT}:environment": ENV,
            f"{PROJECT}:baseImage": python_stack["bluegreen:baseImage"],
            f"{PROJECT}:hosts": python_stack["bluegreen:hosts"],
            f"{PROJECT}:platform": python_stack["bluegreen:platform"],
            f"{PROJECT}:services": {"vizconfig": vizconfig()}}


@pytest.fixture(scope="module")
def deployment():
    # The package's Consul resources are Python dynamic resources: the engine runs their
    # provider with the package's virtualenv, which a YAML program does not name itself.
    before = os.environ.get("PULUMI_RUNTIME_VIRTUALENV")
    os.environ["PULUMI_RUNTIME_VIRTUALENV"] = os.path.join(REPO, ".venv")
    try:
        with deployed(STACK, example_config(), FIGURES, "package_yaml", project=EXAMPLE) as deployment:
            yield deployment
    finally:
        if before is None:
            os.environ.pop("PULUMI_RUNTIME_VIRTUALENV", None)
        else:
            os.environ["PULUMI_RUNTIME_VIRTUALENV"] = before


def served() -> tuple[str, str]:
    body = get_json(STABLE)
    return body["version"], body["colour"]


def test_the_yaml_program_deploys_the_service_whose_stable_uri_answers(deployment):
    start = time.monotonic()
    outputs = deployment.up()
    FIGURES["first_up_s"] = round(time.monotonic() - start, 1)
    assert (outputs["url"], outputs["live"], outputs["proxy"]) == (STABLE, "blue", PROXY)
    assert outputs["images"]["blue"]["image"].startswith(f"127.0.0.1:{PORTS['registry']}/vizconfig@sha256:")
    wait_until(lambda: served() == ("1.0.0", "blue"), 10, what="v1 from blue")


def test_a_second_update_flips_to_green_without_a_failed_request(deployment):
    deployment.update_config(lambda config: config.__setitem__(
        f"{PROJECT}:services", {"vizconfig": vizconfig(live="green", green={"version": "2.0.0"})}))
    with RequestLoop(STABLE) as loop:
        start = time.monotonic()
        outputs = deployment.up()
        FIGURES["flip_up_s"] = round(time.monotonic() - start, 1)
        wait_until(lambda: served() == ("2.0.0", "green"), 5, what="v2 from green")
    FIGURES["flip_requests"], FIGURES["flip_failed_requests"] = len(loop.results), len(loop.failures)
    assert outputs["live"] == "green"
    assert {colour for _, status, colour, _ in loop.results if status == 200} == {"blue", "green"}
    assert not loop.failures, loop.failures[:5]
