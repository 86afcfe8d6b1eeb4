"""Blue/green end to end: first deploy, deploy v2 to green and flip, roll back, a failing gate,
destroy. Real build, push, Consul checks and nginx; the tests run in order on one stack."""

from __future__ import annotations

import subprocess
import time

import pytest
import requests
from pulumi import automation as auto

from e2e_harness import (Deployment, InBackground, RequestLoop, consul, container_identity, deployed,
                         docker_names, get_json, platform_config, wait_until)

STACK = ENV = "e2e-bg"
PORTS = {"consul": 28600, "serf": 28601, "server": 28602, "registry": 28603, "proxy": 28604}
CONSUL = f"http://127.0.0.1:{PORTS['consul']}"
PROXY = f"http://127.0.0.1:{PORTS['proxy']}"
STABLE = f"{PROXY}/{ENV}/vizconfig/"
PREVIEW = f"{PROXY}/preview/{ENV}/vizconfig/"
ALIAS = f"{CONSUL}/v1/kv/bluegreen/aliases/{ENV}/vizconfig?raw"
FIGURES: dict = {}
DEPLOYMENT: list = []   # the module's stack, for the Consul reads below


def kv() -> requests.Session:
    """Consul with the deployer's token (the stack's `credentials` output)."""
    return consul(DEPLOYMENT[0].deployer_token())


def alias() -> str:
    return kv().get(ALIAS, timeout=3).text


def service_config(**overrides) -> dict:
    settings = {"manifest": "services/vizconfig/service.yaml", "live": "blue",
                "blue": {"version": "1.0.0"}, "gateTimeout": 60}
    settings.update(overrides)
    return {"vizconfig": settings}


@pytest.fixture(scope="module")
def deployment():
    config = platform_config(PORTS, ENV)
    config["bluegreen:services"] = service_config()
    with deployed(STACK, config, FIGURES, "bluegreen") as deployment:
        DEPLOYMENT[:] = [deployment]
        yield deployment


def set_services(deployment: Deployment, **overrides) -> None:
    deployment.update_config(lambda c: c.__setitem__("bluegreen:services", service_config(**overrides)))


def served() -> tuple[str, str]:
    body = get_json(STABLE)
    return body["version"], body["colour"]


class AliasWatch(InBackground):
    """Records when the alias in Consul first takes a value (polled every 20 ms)."""

    def __init__(self, target: str):
        self.target, self.seen_at = target, None

    def _run(self):
        session = kv()
        while not self._stop.is_set() and self.seen_at is None:
            try:
                if session.get(ALIAS, timeout=1).text == self.target:
                    self.seen_at = time.monotonic()
            except requests.RequestException:
                pass
            time.sleep(0.02)


def first_response_from(loop: RequestLoop, colour: str, after: float) -> float:
    return min(sent for sent, status, served_by, _ in loop.results
               if status == 200 and served_by == colour and sent >= after)


def test_a_first_deploy_serves_v1_from_blue(deployment):
    start = time.monotonic()
    outputs = deployment.up()
    FIGURES["first_deploy_s"] = round(time.monotonic() - start, 1)
    assert outputs["services"]["vizconfig"]["live"] == "blue"
    assert outputs["services"]["vizconfig"]["url"] == STABLE
    image = outputs["services"]["vizconfig"]["images"]["blue"]["image"]
    assert image.startswith(f"127.0.0.1:{PORTS['registry']}/vizconfig@sha256:")
    wait_until(lambda: served() == ("1.0.0", "blue"), 10, what="v1 from blue")
    assert alias() == "blue"
    # The container runs exactly the pushed digest, and the API reaches its linked database.
    assert container_image(f"bluegreen-{ENV}-vizconfig-blue-local-0") == image
    put = requests.put(f"{STABLE}configs/chart-1", json={"type": "bar"}, timeout=3)
    assert put.status_code == 200 and put.json()["colour"] == "blue"


def flip_under_load(deployment: Deployment, colour: str, version: str, label: str) -> float:
    """`up` with a request loop running; records the figures under `label` and returns the flip
    time (alias write -> first response from `colour`). Fails on any failed request."""
    with RequestLoop(STABLE) as loop, AliasWatch(colour) as alias:
        start = time.monotonic()
        deployment.up()
        FIGURES[f"{label}_up_s"] = round(time.monotonic() - start, 1)
        wait_until(lambda: served() == (version, colour), 5, what=f"{version} from {colour}")
        time.sleep(1)
    assert alias.seen_at is not None, f"the alias never said {colour}"
    flip = first_response_from(loop, colour, alias.seen_at) - alias.seen_at
    FIGURES[f"{label}_flip_s"] = round(flip, 2)
    FIGURES[f"{label}_requests"] = len(loop.results)
    FIGURES[f"{label}_failed_requests"] = len(loop.failures)
    assert loop.failures == [], loop.failures[:5]
    assert len(loop.results) > 20
    return flip


def test_b_v2_on_green_and_flip_without_failed_requests(deployment):
    set_services(deployment, live="green", green={"version": "2.0.0"})
    assert flip_under_load(deployment, "green", "2.0.0", "version_bump") < 5
    # Shared database: what blue stored, green reads.
    assert get_json(f"{STABLE}configs/chart-1")["document"] == {"type": "bar"}
    # The old colour keeps running and stays reachable on the preview URI.
    assert get_json(PREVIEW)["colour"] == "blue"


def test_c_revert_flips_back_to_v1_without_restarting_green(deployment):
    green = f"bluegreen-{ENV}-vizconfig-green-local-0"
    before = container_identity(green)
    set_services(deployment, live="blue", green={"version": "2.0.0"})
    assert flip_under_load(deployment, "blue", "1.0.0", "rollback") < 5
    assert container_identity(green) == before, "green was restarted by a rollback"
    assert get_json(PREVIEW)["version"] == "2.0.0"


def test_d_failing_green_gate_fails_the_update_and_keeps_traffic_on_blue(deployment):
    set_services(deployment, live="green", gateTimeout=10,
                 green={"version": "2.0.1", "env": {"DB_ADDRESS": "db:1"}})
    with RequestLoop(STABLE) as loop:
        with pytest.raises(auto.CommandError) as failure:
            deployment.up()
    message = str(failure.value)
    assert "health gate e2e-bg/vizconfig/green did not pass" in message
    assert f"HTTP GET /health on {ENV}-vizconfig-green-local-0" in message
    assert "critical" in message
    assert alias() == "blue"
    assert served() == ("1.0.0", "blue")
    assert loop.failures == [], loop.failures[:5]


def test_e_destroy_leaves_no_container_network_volume_registration_or_key(deployment):
    # Removing the service first, with Consul still up, shows its registrations and keys go.
    deployment.update_config(lambda c: c.__setitem__("bluegreen:services", {}))
    deployment.up()
    services = kv().get(f"{CONSUL}/v1/agent/services", timeout=3).json()
    assert [s for s in services if s.startswith(f"{ENV}-")] == []
    for tree in ("aliases", "config", "routes", "catalogue", "slots"):
        keys = kv().get(f"{CONSUL}/v1/kv/bluegreen/{tree}/{ENV}/?keys", timeout=3)
        assert keys.status_code == 404, (tree, keys.text)
    # Only the release history stays: it outlives the service's removal, as releases do.
    history = kv().get(f"{CONSUL}/v1/kv/bluegreen/history/{ENV}/?keys", timeout=3).json()
    assert f"bluegreen/history/{ENV}/vizconfig/1.0.0" in history
    assert docker_names("container", f"bluegreen-{ENV}-vizconfig") == []
    deployment.destroy()
    for kind in ("container", "network", "volume"):
        assert docker_names(kind, f"bluegreen-{ENV}-") == [], kind


def container_image(name: str) -> str:
    return subprocess.run(["docker", "inspect", "--format", "{{.Config.Image}}", name],
                          capture_output=True, text=True, check=True).stdout.strip()
