"""Environment-wide release end to end: two services of one environment flip to their offline
colours in one Consul transaction, or neither does when one of them fails its checks; promoting
again moves both back. Bounded keep-alive client loops run through both stable URIs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from e2e_harness import (REPO, RequestLoop, deployed, deployer_consul, get_json, platform_config,
                         wait_until)

STACK = ENV = "e2e-promote"
PORTS = {"consul": 29300, "serf": 29301, "server": 29302, "registry": 29303, "proxy": 29304}
PROXY = f"http://127.0.0.1:{PORTS['proxy']}"
CONSUL = f"http://127.0.0.1:{PORTS['consul']}"


def copy_service(name: str, healthy: bool = True) -> str:
    """services/vizconfig under another name (and route); optionally with a failing health check.
    Returns its manifest path."""
    root = tempfile.mkdtemp(prefix=f"bluegreen-{name}-")
    shutil.copytree(os.path.join(REPO, "services", "vizconfig"), root, dirs_exist_ok=True)
    manifest = os.path.join(root, "service.yaml")
    with open(manifest, encoding="utf-8") as handle:
        text = handle.read().replace("name: vizconfig", f"name: {name}").replace(
            "route: vizconfig", f"route: {name}")
    with open(manifest, "w", encoding="utf-8") as handle:
        handle.write(text)
    if not healthy:
        server = os.path.join(root, "app", "server.py")
        with open(server, encoding="utf-8") as handle:
            code = handle.read().replace("self.store.ping()", 'raise redis.RedisError("broken")', 1)
        with open(server, "w", encoding="utf-8") as handle:
            handle.write(code)
    return manifest


@pytest.fixture(scope="module")
def deployment():
    config = platform_config(PORTS, ENV)
    # charts 2.0.0's offline gate never passes: its update waits all of charts' gateTimeout.
    config["bluegreen:services"] = {
        "vizconfig": {"manifest": "services/vizconfig/service.yaml", "live": "blue",
                      "blue": {"version": "1.0.0"}, "green": {"version": "2.0.0"}},
        "charts": {"manifest": copy_service("charts"), "live": "blue",
                   "blue": {"version": "1.0.0"}, "gateTimeout": 10},
    }
    with deployed(STACK, config) as deployment:
        deployment.up()
        yield deployment


def live(service: str) -> str:
    return deployer_consul(STACK).get(f"{CONSUL}/v1/kv/bluegreen/aliases/{ENV}/{service}?raw", timeout=3).text


def promote(*services: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bluegreen.delivery", "promote", "--stack", STACK, *services],
                          cwd=REPO, capture_output=True, text=True, timeout=300)


def loops():
    return (RequestLoop(f"{PROXY}/{ENV}/vizconfig/", keep_alive=True),
            RequestLoop(f"{PROXY}/{ENV}/charts/", keep_alive=True))


def test_one_failing_colour_keeps_every_alias_where_it_was(deployment):
    # charts 2.0.0 fails its checks on the offline colour
    deployment.update_config(lambda c: c["bluegreen:services"]["charts"].update(
        manifest=copy_service("charts", healthy=False), green={"version": "2.0.0"}))
    deployment.up()
    first, second = loops()
    with first, second:
        result = promote("vizconfig", "charts")
    assert result.returncode == 1, result.stdout
    assert "promote REFUSED" in result.stdout and "charts/green did not pass" in result.stdout
    assert (live("vizconfig"), live("charts")) == ("blue", "blue")
    assert first.failures == [] and second.failures == []


def test_both_flip_together_and_back(deployment):
    deployment.update_config(lambda c: c["bluegreen:services"]["charts"].update(
        manifest=copy_service("charts"), green={"version": "2.0.1"}))
    deployment.up()
    first, second = loops()
    with first, second:
        result = promote("vizconfig", "charts")
        assert result.returncode == 0, result.stdout + result.stderr
        assert (live("vizconfig"), live("charts")) == ("green", "green")
        wait_until(lambda: get_json(f"{PROXY}/{ENV}/charts/")["colour"] == "green", 10, what="charts green")
        back = promote("vizconfig", "charts")
        assert back.returncode == 0, back.stdout + back.stderr
        assert (live("vizconfig"), live("charts")) == ("blue", "blue")
    assert len(first.results) > 10 and len(second.results) > 10
    assert first.failures == [] and second.failures == [], (first.failures[:3], second.failures[:3])
    with open(deployment.path, encoding="utf-8") as handle:
        assert handle.read().count("live: blue") == 2
