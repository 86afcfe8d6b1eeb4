"""Immutable releases end to end, on a copy of the example service whose source the tests edit:
a deploy to the offline colour never touches the live one, a released version is never rebuilt,
and rollbacks reach the last good release or any release by digest, without a build. Every step
runs under a bounded keep-alive client loop (about 20 requests/s) through the stable URI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import requests
import yaml
from pulumi import automation as auto

from e2e_harness import (LOG_DIR, REPO, Deployment, RequestLoop, ServiceRepo, container_identity, deployed,
                         deployer_consul, docker_names, get_json, platform_config, state_locks,
                         wait_until)

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


def failed_up(deployment: Deployment) -> str:
    """The message of a `pulumi up` that must fail."""
    with pytest.raises(auto.CommandError) as failure:
        deployment.up()
    return str(failure.value)


def both_colours() -> dict[str, tuple[str, str]]:
    return {colour: containers(colour) for colour in ("blue", "green")}


def rollback(*args: str) -> tuple[subprocess.CompletedProcess, float]:
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "bluegreen.delivery", "rollback", "vizconfig", "--stack",
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
    before = both_colours()
    change(deployment, green={"version": "1.0.0"})
    message = failed_up(deployment)
    assert "bluegreen.services.vizconfig.green.version: vizconfig 1.0.0 is already released as " \
           f"127.0.0.1:{PORTS['registry']}/vizconfig@sha256:" in message
    assert "bump the version (e.g. 1.0.1)" in message
    assert both_colours() == before
    assert answer(PREVIEW) == ("2.0.0", "green", "two") and answer() == ("1.0.0", "blue", "one")
    change(deployment, green={"version": "2.0.0"})


def test_flip_to_v2_then_a_broken_v3_on_the_offline_colour(repo, deployment):
    change(deployment, live="green")
    with RequestLoop(STABLE, keep_alive=True) as loop:
        deployment.up()
        wait_until(lambda: answer() == ("2.0.0", "green", "two"), 10, what="v2 live")
    checked(loop, "flip_to_v2")
    repo.edit("three", healthy=False)
    # An offline gate that never passes waits its whole timeout before it reports; a healthy
    # colour passes in a second or two (1 s health interval), so 10 s is ample from here on.
    change(deployment, blue={"version": "3.0.0"}, gateTimeout=10)
    deployment.up()   # the offline colour's gate only reports: v3 fails it, traffic stays on v2
    wait_until(lambda: blue_checks() == {"critical"}, 20, what="v3's checks critical")
    # None of blue's instances passes, so its upstream holds all of them (panic routing): the
    # preview shows what the failing release does, and its gate says why it fails.
    assert answer(PREVIEW) == ("3.0.0", "blue", "three")
    assert answer() == ("2.0.0", "green", "two")


def blue_checks() -> set[str]:
    """The states of the checks of the environment's blue instances in Consul."""
    entries = deployer_consul(STACK).get(f"{CONSUL}/v1/health/service/vizconfig?tag={ENV}&tag=blue",
                                         timeout=3).json()
    return {check["Status"] for entry in entries for check in entry["Checks"]
            if check["CheckID"] != "serfHealth"}


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
    before = both_colours()
    with RequestLoop(STABLE, keep_alive=True) as loop:
        start = time.monotonic()
        process = subprocess.Popen([sys.executable, "-m", "bluegreen.delivery", "rollback", "vizconfig",
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
    assert both_colours() == before
    reload_config(deployment)
    assert service(deployment)["live"] == "green"
    listing = subprocess.run([sys.executable, "-m", "bluegreen.delivery", "releases", "vizconfig", "--stack",
                              STACK], cwd=REPO, capture_output=True, text=True, timeout=60).stdout
    rows = {line.split()[0]: line for line in listing.splitlines()[1:]}
    assert set(rows) == {"1.0.0", "2.0.0", "3.0.0", "4.0.0"}
    assert rows["4.0.0"].rstrip().endswith("green (live)") and "never" in rows["3.0.0"]
    # The catalogue shows the same history.
    entries = [s for s in get_json(f"http://127.0.0.1:{PORTS['proxy']}/catalogue.json")["services"]
               if s["entry"]["environment"] == ENV]
    assert {h["version"] for h in entries[0]["history"]} == {"1.0.0", "2.0.0", "3.0.0", "4.0.0"}


# --- the recovery paths: every decision reads the alias, and nothing touches what it names ------

def alias() -> str:
    return deployer_consul(STACK).get(f"{CONSUL}/v1/kv/bluegreen/aliases/{ENV}/vizconfig?raw",
                                      timeout=3).text


def slot_record(colour: str) -> dict:
    return json.loads(deployer_consul(STACK).get(
        f"{CONSUL}/v1/kv/bluegreen/slots/{ENV}/vizconfig/{colour}?raw", timeout=3).text)


def first_served(loop: RequestLoop, version: str, since: float) -> float | None:
    """Seconds from `since` to the loop's first answer from `version`."""
    return next((round(sent - since, 2) for sent, status, _, served in loop.results
                 if status == 200 and served == version and sent >= since), None)


def test_a_broken_configuration_with_its_flip_fails_its_gate_and_traffic_stays(deployment):
    """A configuration-only change on blue (its store unreachable) with live: blue in the same
    change: the gate fails and traffic stays on green; the file asks blue, the alias says green."""
    green_before = containers("green")
    blue = dict(service(deployment)["blue"])
    change(deployment, blue={**blue, "env": {"DB_ADDRESS": "db:1"}}, live="blue", gateTimeout=10)
    with RequestLoop(STABLE, keep_alive=True) as loop:
        message = failed_up(deployment)
    assert f"health gate {ENV}/vizconfig/blue did not pass" in message
    checked(loop, "recovery_broken_config_gate")
    assert containers("green") == green_before and answer() == ("4.0.0", "green", "four")
    assert alias() == "green" and service(deployment)["live"] == "blue"


def test_then_a_change_to_the_colour_the_file_calls_offline_is_refused(repo, deployment):
    """The file calls green offline, but the alias says it serves: a version bump there is
    refused before anything is built or changed."""
    before = both_colours()
    green = dict(service(deployment)["green"])
    repo.edit("six")
    change(deployment, green={"version": "6.0.0"})
    with RequestLoop(STABLE, keep_alive=True) as loop:
        message = failed_up(deployment)
    assert "bluegreen.services.vizconfig.green: green would go from 4.0.0 to 6.0.0, but the alias " \
           f"bluegreen/aliases/{ENV}/vizconfig names green" in message
    assert "acknowledgeLive: green@" in message
    checked(loop, "recovery_refused_live_change")
    assert both_colours() == before
    assert deployer_consul(STACK).get(f"{CONSUL}/v1/kv/bluegreen/releases/vizconfig/6.0.0",
                                      timeout=3).status_code == 404, "6.0.0 was built"
    change(deployment, green=green)   # the refused change is not merged


def test_rollback_to_a_version_deploys_it_where_the_alias_does_not_point_with_its_config(deployment):
    """--to 1.0.0 in that state goes to blue (offline by the alias, whatever the file says) with
    the configuration 1.0.0 last ran live with: the broken DB_ADDRESS goes with it."""
    green_before = containers("green")
    with RequestLoop(STABLE, keep_alive=True) as loop:
        start = time.monotonic()
        result, seconds = rollback("--to", "1.0.0")
        wait_until(lambda: answer() == ("1.0.0", "blue", "one"), 15, what="1.0.0 live again")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "deploying 1.0.0 by digest to blue (no build), with the configuration it last ran " \
           "live with" in result.stdout
    FIGURES["recovery_rollback_redeploy_command_s"] = round(seconds, 1)
    FIGURES["recovery_rollback_redeploy_served_s"] = first_served(loop, "1.0.0", start)
    checked(loop, "recovery_rollback_to")
    assert containers("green") == green_before
    reload_config(deployment)
    assert service(deployment)["live"] == "blue" == alias()
    assert "env" not in service(deployment)["blue"], "the broken override came back"


def test_rollback_without_to_then_moves_only_the_alias(deployment):
    before = both_colours()
    with RequestLoop(STABLE, keep_alive=True) as loop:
        start = time.monotonic()
        result, _ = rollback()
        wait_until(lambda: answer() == ("4.0.0", "green", "four"), 15, what="4.0.0 live again")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"alias bluegreen/aliases/{ENV}/vizconfig: blue -> green" in result.stdout
    FIGURES["recovery_rollback_alias_served_s"] = first_served(loop, "4.0.0", start)
    checked(loop, "recovery_rollback_alias")
    assert both_colours() == before
    reload_config(deployment)
    assert service(deployment)["live"] == "green" == alias()


def test_a_configuration_only_change_is_its_own_release_and_rolls_back(deployment):
    """4.0.0 with another env on blue: gated and flipped like a new version, its own line in the
    history and `releases`; the rollback goes back to 4.0.0 as green runs it (alias only)."""
    reference = service(deployment)["green"].get("image") or json.loads(deployer_consul(STACK).get(
        f"{CONSUL}/v1/kv/bluegreen/releases/vizconfig/4.0.0?raw", timeout=3).text)["reference"]
    green_before = containers("green")
    change(deployment, blue={"version": "4.0.0", "image": reference, "env": {"GREETING": "hi"}},
           live="blue")
    with RequestLoop(STABLE, keep_alive=True) as loop:
        deployment.up()
        wait_until(lambda: answer()[:2] == ("4.0.0", "blue"), 15, what="4.0.0 on blue")
    checked(loop, "recovery_config_only_flip")
    assert containers("green") == green_before
    release = slot_record("blue")["release"]
    assert release.startswith("4.0.0+") and slot_record("blue")["config"]["env"] == {"GREETING": "hi"}
    listing = subprocess.run([sys.executable, "-m", "bluegreen.delivery", "releases", "vizconfig", "--stack",
                              STACK], cwd=REPO, capture_output=True, text=True, timeout=60).stdout
    assert any(line.split()[0] == release and line.rstrip().endswith("blue (live)")
               for line in listing.splitlines()[1:]), listing
    with RequestLoop(STABLE, keep_alive=True) as loop:
        result, _ = rollback()
        wait_until(lambda: answer()[:2] == ("4.0.0", "green"), 15, what="4.0.0 on green again")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "rolling back to 4.0.0 " in result.stdout and "blue -> green" in result.stdout
    checked(loop, "recovery_config_only_rollback")
    assert containers("green") == green_before
    reload_config(deployment)
    assert service(deployment)["live"] == "green" == alias()


def test_a_rollback_killed_midway_converges_when_run_again(deployment):
    """kill -9 of `rollback --to 2.0.0` (the command and its pulumi) while its update deploys
    blue; the same command again clears what the kill left and finishes; green is untouched."""
    green_before = containers("green")
    with RequestLoop(STABLE, keep_alive=True) as loop:
        process = subprocess.Popen(
            [sys.executable, "-m", "bluegreen.delivery", "rollback", "vizconfig", "--stack", STACK, "--to",
             "2.0.0"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True)
        wait_until(lambda: state_locks(STACK), 60, interval_s=0.05, what="the rollback's update")
        time.sleep(1.0)
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate(timeout=30)
        FIGURES["recovery_killed_alias"] = alias()
        result, _ = rollback("--to", "2.0.0")
        wait_until(lambda: answer() == ("2.0.0", "blue", "two"), 15, what="2.0.0 live")
    assert result.returncode == 0, result.stdout + result.stderr
    checked(loop, "recovery_killed_rollback")
    assert containers("green") == green_before
    reload_config(deployment)
    assert service(deployment)["live"] == "blue" == alias()
    assert not state_locks(STACK)


def test_remove_leaves_nothing_of_the_service(deployment):
    """`remove --purge-releases`: containers, network, volume, registrations, KV, images, the
    registry's repositories and the release records all go; the platform stays."""
    result = subprocess.run([sys.executable, "-m", "bluegreen.delivery", "remove", "vizconfig", "--stack", STACK,
                             "--purge-releases"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    prefix = f"bluegreen-{ENV}-vizconfig"
    for kind in ("container", "network", "volume"):
        assert docker_names(kind, prefix) == [], kind
    session = deployer_consul(STACK)
    services = session.get(f"{CONSUL}/v1/agent/services", timeout=3).json()
    assert not [s for s in services if s.startswith(f"{ENV}-vizconfig")]
    for key in (f"aliases/{ENV}/vizconfig", f"routes/{ENV}/vizconfig", f"config/{ENV}/vizconfig/",
                f"catalogue/{ENV}/vizconfig", f"slots/{ENV}/vizconfig/", "releases/vizconfig/",
                f"history/{ENV}/vizconfig/"):
        assert session.get(f"{CONSUL}/v1/kv/bluegreen/{key}?recurse", timeout=3).status_code == 404, key
    registry = f"127.0.0.1:{PORTS['registry']}"
    assert subprocess.run(["docker", "image", "ls", "-q", f"{registry}/vizconfig"],
                          capture_output=True, text=True).stdout.strip() == ""
    listed = subprocess.run(["docker", "exec", f"bluegreen-{STACK}-registry", "ls",
                             "/var/lib/docker-registry/docker/registry/v2/repositories"],
                            capture_output=True, text=True).stdout.split()
    assert "vizconfig" not in listed and "vizconfig-db" not in listed
    assert requests.get(STABLE, timeout=3).status_code in (404, 502, 503)
    reload_config(deployment)
    assert "vizconfig" not in (deployment.config.get("bluegreen:services") or {})
