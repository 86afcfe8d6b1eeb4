"""Immutable releases end to end, on a copy of the example service whose source the tests edit:
a deploy to the offline colour never touches the live one, a released version is never rebuilt,
and rollbacks reach the last good release or any release by digest, without a build. Every step
runs under a bounded keep-alive client loop (about 20 requests/s) through the stable URI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import requests
import yaml
from pulumi import automation as auto

from e2e_harness import (LOG_DIR, REPO, Deployment, RequestLoop, ServiceRepo, container_identity, deployed,
                         deployer_consul, get_json, platform_config, wait_until)

STACK = ENV = "e2e-rel"
PORTS = {"consul": 29200, "serf": 29201, "server": 29202, "registry": 29203, "proxy": 29204}
CONSUL = f"http://127.0.0.1:{PORTS['consul']}"
STABLE = f"http://127.0.0.1:{PORTS['proxy']}/{ENV}/vizconfig/"
PREVIEW = f"http://127.0.0.1:{PORTS['proxy']}/preview/{ENV}/vizconfig/"
FIGURES: dict = {}


@pytest.fixture(scope="module")
def repo():
    repo = ServiceRepo("bluegreen-rel-")
    yield repo
    repo.remove()


@pytest.fixture(scope="module")
def deployment(repo):
    config = platform_config(PORTS, ENV)
    config["bluegreen:services"] = {"vizconfig": {"manifest": repo.manifest, "live": "blue",
                                                  "blue": {"version": "1.0.0"}, "gateTimeout": 30}}
    with deployed(STACK, config, FIGURES, "releases") as deployment:
        yield deployment


def service(deployment: Deployment) -> dict:
    return deployment.config["bluegreen:services"]["vizconfig"]


def change(deployment: Deployment, **settings) -> None:
    deployment.update_config(lambda c: c["bluegreen:services"]["vizconfig"].update(settings))


def reload_config(deployment: Deployment) -> None:
    """The rollback command writes the stack file itself; the test's copy follows it."""
    with open(deployment.path, encoding="utf-8") as handle:
        deployment.config = yaml.safe_load(handle)["config"]


def answer(url: str = STABLE) -> tuple[str, str, str]:
    body = get_json(url)
    return body["version"], body["colour"], body.get("stamp", "")


def containers(colour: str) -> tuple[str, str]:
    return container_identity(f"bluegreen-{ENV}-vizconfig-{colour}-local-0")


def rollback(*args: str) -> tuple[subprocess.CompletedProcess, float]:
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "delivery", "rollback", "vizconfig", "--stack",
                             STACK, *args], cwd=REPO, capture_output=True, text=True, timeout=300)
    with open(os.path.join(LOG_DIR, f"{STACK}.log"), "a", encoding="utf-8") as log:
        log.write(f"\n===== rollback {' '.join(args)}\n{result.stdout}{result.stderr}")
    return result, time.monotonic() - start


def checked(loop: RequestLoop, label: str) -> None:
    FIGURES[f"{label}_requests"] = len(loop.results)
    FIGURES[f"{label}_failed_requests"] = len(loop.failures)
    assert len(loop.results) > 10
    assert loop.failures == [], loop.failures[:5]


def test_v1_goes_live_on_blue(repo, deployment):
    repo.edit("one")
    deployment.up()
    wait_until(lambda: answer() == ("1.0.0", "blue", "one"), 15, what="v1 from blue")


def test_deploying_changed_sources_to_green_never_touches_blue(repo, deployment):
    blue_before = containers("blue")
    repo.edit("two")
    change(deployment, green={"version": "2.0.0"})
    with RequestLoop(STABLE, keep_alive=True) as loop:
        deployment.up()
        wait_until(lambda: answer(PREVIEW) == ("2.0.0", "green", "two"), 15, what="v2 on preview")
        time.sleep(1)
    checked(loop, "offline_deploy")
    assert containers("blue") == blue_before, "the live colour was replaced or restarted"
    assert answer() == ("1.0.0", "blue", "one"), "blue no longer runs v1's code"
    assert {r[3] for r in loop.results} == {"1.0.0"}


def test_rebuilding_a_released_version_from_changed_sources_is_refused(repo, deployment):
    before = {colour: containers(colour) for colour in ("blue", "green")}
    change(deployment, green={"version": "1.0.0"})
    with pytest.raises(auto.CommandError) as failure:
        deployment.up()
    message = str(failure.value)
    assert "bluegreen.services.vizconfig.green.version: vizconfig 1.0.0 is already released as " \
           f"127.0.0.1:{PORTS['registry']}/vizconfig@sha256:" in message
    assert "bump the version (e.g. 1.0.1)" in message
    assert {colour: containers(colour) for colour in ("blue", "green")} == before
    assert answer(PREVIEW) == ("2.0.0", "green", "two") and answer() == ("1.0.0", "blue", "one")
    change(deployment, green={"version": "2.0.0"})


def test_flip_to_v2_then_a_broken_v3_on_the_offline_colour(repo, deployment):
    change(deployment, live="green")
    with RequestLoop(STABLE, keep_alive=True) as loop:
        deployment.up()
        wait_until(lambda: answer() == ("2.0.0", "green", "two"), 10, what="v2 live")
    checked(loop, "flip_to_v2")
    repo.edit("three", healthy=False)
    change(deployment, blue={"version": "3.0.0"})
    deployment.up()   # the offline colour's gate only reports: v3 fails it, traffic stays on v2
    wait_until(lambda: requests.get(PREVIEW, timeout=3).status_code >= 500, 20, what="v3 unhealthy")
    assert answer() == ("2.0.0", "green", "two")


def test_rollback_after_a_failed_deploy_goes_to_the_last_good_release(repo, deployment):
    """v1 was live before v2; blue now runs the broken v3, so v1 goes to blue by its digest (the
    checkout holds v3's sources: only a build could bring back v1's code, and there is none)."""
    green_before = containers("green")
    with RequestLoop(STABLE, keep_alive=True) as loop:
        result, seconds = rollback()
        wait_until(lambda: answer() == ("1.0.0", "blue", "one"), 15, what="v1 live again")
    FIGURES["rollback_redeploy_s"] = round(seconds, 1)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "deploying 1.0.0 by digest to blue (no build)" in result.stdout
    checked(loop, "rollback_after_failed_deploy")
    assert containers("green") == green_before
    reload_config(deployment)
    assert service(deployment)["live"] == "blue"
    assert service(deployment)["blue"]["image"].endswith(
        json.loads(deployer_consul(STACK).get(f"{CONSUL}/v1/kv/bluegreen/releases/vizconfig/1.0.0?raw",
                                timeout=3).text)["reference"].rsplit("@", 1)[1])


def test_rollback_to_an_older_release_in_neither_colour(repo, deployment):
    repo.edit("four")
    change(deployment, green={"version": "4.0.0"}, live="green")
    deployment.up()
    wait_until(lambda: answer() == ("4.0.0", "green", "four"), 15, what="v4 live")
    with RequestLoop(STABLE, keep_alive=True) as loop:
        result, _ = rollback("--to", "2.0.0")
        wait_until(lambda: answer() == ("2.0.0", "blue", "two"), 15, what="v2 live again")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "deploying 2.0.0 by digest to blue (no build)" in result.stdout
    checked(loop, "rollback_to_older")
    # v2's code came back although the checkout holds v4's: it ran the recorded digest.
    assert answer()[2] == "two"
    reload_config(deployment)


def test_rollback_when_the_other_colour_runs_it_moves_only_the_alias(repo, deployment):
    before = {colour: containers(colour) for colour in ("blue", "green")}
    with RequestLoop(STABLE, keep_alive=True) as loop:
        start = time.monotonic()
        process = subprocess.Popen([sys.executable, "-m", "delivery", "rollback", "vizconfig",
                                    "--stack", STACK], cwd=REPO, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
        _, waited = wait_until(lambda: answer() == ("4.0.0", "green", "four"), 15, interval_s=0.05,
                               what="v4 live again")
        output, _ = process.communicate(timeout=300)
    FIGURES["rollback_alias_only_to_served_s"] = round(waited, 2)
    FIGURES["rollback_alias_only_command_s"] = round(time.monotonic() - start, 1)
    assert process.returncode == 0, output
    assert "alias bluegreen/aliases/e2e-rel/vizconfig: blue -> green" in output
    checked(loop, "rollback_alias_only")
    assert {colour: containers(colour) for colour in ("blue", "green")} == before
    reload_config(deployment)
    assert service(deployment)["live"] == "green"
    listing = subprocess.run([sys.executable, "-m", "delivery", "releases", "vizconfig", "--stack",
                              STACK], cwd=REPO, capture_output=True, text=True, timeout=60).stdout
    rows = {line.split()[0]: line for line in listing.splitlines()[1:]}
    assert set(rows) == {"1.0.0", "2.0.0", "3.0.0", "4.0.0"}
    assert rows["4.0.0"].rstrip().endswith("green (live)") and "never" in rows["3.0.0"]
    # The catalogue shows the same history.
    entries = [s for s in get_json(f"http://127.0.0.1:{PORTS['proxy']}/catalogue.json")["services"]
               if s["entry"]["environment"] == ENV]
    assert {h["version"] for h in entries[0]["history"]} == {"1.0.0", "2.0.0", "3.0.0", "4.0.0"}
