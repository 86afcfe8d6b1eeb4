"""Bake time end to end, on a copy of the example service whose code the tests edit: with nothing
in bake the platform's watchdog makes no request at all; a good flip bakes and the watchdog goes
quiet again; a release that passes its gate (/health answers 200) but serves 5xx on / after its
flip is flipped back by the watchdog within the bake time, which the catalogue and the release
history show; the next `pulumi up` reports the disagreement instead of flipping it live again,
and `rollback` accepts the flip back by recording it. Two watchdogs run, one acting: killed
(kill -9), the standby takes the lead within seconds, and during a bake of a failing release it
takes over the bake and rolls it back.
Figures (5xx start to flip back, failed requests) go to reports/e2e/bake-figures.json."""

from __future__ import annotations

import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time

import jsonschema
import pytest
import requests
import yaml
from pulumi import automation as auto

from e2e_harness import (LOG_DIR, REPO, Deployment, InBackground, RequestLoop, ServiceRepo, chromium_dom,
                         container_identity, deployed, deployer_consul, get_json, platform_config, wait_until)

STACK = ENV = "e2e-bake"
PORTS = {"consul": 29500, "serf": 29501, "server": 29502, "registry": 29503, "proxy": 29504}
CONSUL = f"http://127.0.0.1:{PORTS['consul']}"
PROXY = f"http://127.0.0.1:{PORTS['proxy']}"
STABLE = f"{PROXY}/{ENV}/vizconfig/"
ALIAS = f"{CONSUL}/v1/kv/bluegreen/aliases/{ENV}/vizconfig"
BAKE = f"{CONSUL}/v1/kv/bluegreen/bake/{ENV}/vizconfig"
WATCHDOGS = tuple(f"bluegreen-{STACK}-watchdog-{number}" for number in (1, 2))
LEADER = f"{CONSUL}/v1/kv/bluegreen/watchdog/leader"
BAKE_S = 60
FIGURES: dict = {}


@pytest.fixture(scope="module")
def repo():
    repo = ServiceRepo("bluegreen-bake-")
    yield repo
    repo.remove()


@pytest.fixture(scope="module")
def deployment(repo):
    config = platform_config(PORTS, ENV)
    config["bluegreen:services"] = {"vizconfig": {
        "manifest": repo.manifest, "live": "blue", "blue": {"version": "1.0.0"},
        "gateTimeout": 30, "bakeTime": f"{BAKE_S}s"}}
    with deployed(STACK, config, FIGURES, "bake") as deployment:
        try:
            yield deployment
        finally:
            save_watchdog_log()


def change(deployment: Deployment, **settings) -> None:
    deployment.update_config(lambda c: c["bluegreen:services"]["vizconfig"].update(settings))


def kv(url: str) -> str | None:
    response = deployer_consul(STACK).get(url, params={"raw": "true"}, timeout=3)
    return None if response.status_code == 404 else response.text


def bake_record() -> dict | None:
    value = kv(BAKE)
    return json.loads(value) if value else None


def history(version: str) -> dict:
    return json.loads(kv(f"{CONSUL}/v1/kv/bluegreen/history/{ENV}/vizconfig/{version}"))


def answer() -> tuple[str, str, str]:
    body = get_json(STABLE)
    return body["version"], body["colour"], body.get("stamp", "")


def containers() -> dict:
    return {c: container_identity(f"bluegreen-{ENV}-vizconfig-{c}-local-0") for c in ("blue", "green")}


def acting() -> str | None:
    """The watchdog holding the leader key (None: none)."""
    value = kv(LEADER)
    return json.loads(value)["watchdog"] if value else None


def standby() -> str:
    return next(name for name in WATCHDOGS if name != acting())


def watchdog_log(name: str | None = None) -> str:
    result = subprocess.run(["docker", "logs", name or acting()], capture_output=True, text=True,
                            check=True)
    return result.stdout + result.stderr


def save_watchdog_log() -> None:
    try:
        os.makedirs(LOG_DIR, exist_ok=True)
        for name in WATCHDOGS:
            with open(os.path.join(LOG_DIR, f"{name}.log"), "w", encoding="utf-8") as handle:
                handle.write(watchdog_log(name))
    except subprocess.CalledProcessError:
        pass


def counters(name: str | None = None) -> dict[str, int]:
    """What a watchdog (the acting one by default) did so far, from the line SIGUSR1 makes it print."""
    name = name or acting()
    before = watchdog_log(name).count("counters:")
    # Not `docker kill --signal USR1`: Docker would no longer restart the container when it dies.
    subprocess.run(["docker", "exec", name, "sh", "-c", "kill -USR1 1"], capture_output=True, check=True)
    log, _ = wait_until(lambda: (text := watchdog_log(name)).count("counters:") > before and text, 5,
                        what="the watchdog's counters")
    line = [l for l in log.splitlines() if "counters:" in l][-1]
    return {name: int(value) for name, value in re.findall(r"(\w+)=(\d+)", line)}


class AliasWatch(InBackground):
    """Polls the alias every 20 ms and keeps (monotonic time, value) of each change."""

    def __init__(self, max_seconds: float = 120):
        self.changes: list[tuple[float, str]] = []
        self.max_seconds = max_seconds

    def _run(self):
        start, last = time.monotonic(), None
        while not self._stop.is_set() and time.monotonic() - start < self.max_seconds:
            try:
                value = kv(ALIAS)
            except requests.RequestException:
                value = last
            if value != last:
                self.changes.append((time.monotonic(), value))
                last = value
            time.sleep(0.02)


def test_with_nothing_in_bake_the_watchdog_makes_no_request(repo, deployment):
    repo.edit("one")
    deployment.up()
    wait_until(lambda: answer() == ("1.0.0", "blue", "one"), 15, what="v1 from blue")
    repo.edit("two")
    change(deployment, green={"version": "2.0.0"})
    deployment.up()                     # green deployed offline: no flip, so nothing to bake
    assert bake_record() is None
    first, first_standby = counters(), counters(standby())
    time.sleep(3)
    second, second_standby = counters(), counters(standby())
    FIGURES["idle_counters"] = second
    assert first["probes"] == second["probes"] == 0
    assert first["health_reads"] == second["health_reads"] == 0
    # Two updates wrote a dozen keys; none was under the bake prefix, so none woke it.
    assert second["wakes"] == first["wakes"] <= 2, second
    # The standby only blocks on the leader key: it never read a bake record.
    assert first_standby == second_standby and second_standby["wakes"] == 0, second_standby


def test_a_good_flip_bakes_then_the_watchdog_is_quiet_again(deployment):
    change(deployment, live="green", bakeTime="10s")
    before = counters()
    with RequestLoop(STABLE, keep_alive=True, max_seconds=60) as loop:
        start = time.monotonic()
        deployment.up()
        record = bake_record()
        assert (record["colour"], record["previous"], record["version"], record["previousVersion"]) \
            == ("green", "blue", "2.0.0", "1.0.0")
        _, waited = wait_until(lambda: bake_record()["status"] == "baked", 30, interval_s=0.2,
                               what="the bake to end")
        elapsed = time.monotonic() - start
    assert kv(ALIAS) == "green" and answer()[:2] == ("2.0.0", "green")
    assert loop.failures == [], loop.failures[:5]
    done = counters()
    probes = done["probes"] - before["probes"]
    FIGURES["good_flip_probes"] = probes
    FIGURES["good_flip_client_requests"] = len(loop.results)
    FIGURES["good_flip_failed_requests"] = len(loop.failures)
    assert 20 <= probes <= 5.5 * elapsed, (probes, elapsed)       # about 5/s, bounded
    time.sleep(3)
    quiet = counters()
    assert (quiet["probes"], quiet["health_reads"]) == (done["probes"], done["health_reads"])
    entry = catalogue_entry()
    assert entry["bake"]["status"] == "baked"


def catalogue_entry() -> dict:
    data = get_json(f"{PROXY}/catalogue.json")
    with open(os.path.join(REPO, "images", "proxy", "catalogue.schema.json"), encoding="utf-8") as handle:
        jsonschema.validate(data, json.load(handle))
    [entry] = [s for s in data["services"] if s["entry"]["environment"] == ENV]
    return entry


def catalogue_page() -> str:
    """The catalogue page as headless Chromium renders it."""
    return chromium_dom(f"{PROXY}/catalogue/")


def test_a_release_serving_5xx_after_its_flip_is_flipped_back_within_the_bake_time(repo, deployment):
    repo.edit("three", fail_root=True)
    change(deployment, blue={"version": "3.0.0"}, bakeTime=f"{BAKE_S}s")
    deployment.up()                     # v3 to the offline colour: its gate passes (/health is 200)
    wait_until(lambda: requests.get(f"{PROXY}/preview/{ENV}/vizconfig/", timeout=3).status_code == 500,
               20, what="v3 on preview answering 500")
    before = containers()
    change(deployment, live="blue")
    with AliasWatch() as aliases, RequestLoop(STABLE, rate=20, keep_alive=True, max_seconds=120) as loop:
        deployment.up()                 # flips to blue: v3 passes its gate, then fails its users
        wait_until(lambda: kv(ALIAS) == "green", BAKE_S, interval_s=0.05, what="the watchdog's flip back")
        wait_until(lambda: answer()[:2] == ("2.0.0", "green"), 10, what="v2 served again")
        time.sleep(2)
    errors = [r for r in loop.results if r[1] >= 500]
    assert errors, "the broken release never served"
    first_5xx, last_5xx = errors[0][0], errors[-1][0]
    flipped = [t for t, value in aliases.changes if value == "blue"]
    back = [t for t, value in aliases.changes if value == "green" and flipped and t > flipped[0]]
    served_again = next(r[0] for r in loop.results if r[0] > last_5xx and r[1] == 200)
    FIGURES.update(
        bake_time_s=BAKE_S,
        flip_to_flip_back_s=round(back[0] - flipped[0], 2),
        first_5xx_to_flip_back_s=round(back[0] - first_5xx, 2),
        first_5xx_to_served_again_s=round(served_again - first_5xx, 2),
        failed_requests=len(loop.failures),
        failed_requests_5xx=len(errors),
        failed_requests_other=len(loop.failures) - len(errors),
        client_requests=len(loop.results),
        client_rate_per_s=20,
    )
    assert back[0] - first_5xx < BAKE_S
    assert not [r for r in loop.results if r[0] > last_5xx and r[1] != 200]
    assert containers() == before, "a flip back restarted or replaced containers"

    record = bake_record()
    assert (record["status"], record["colour"], record["previous"], record["version"]) == \
        ("rolled-back", "blue", "green", "3.0.0")
    assert record["reason"].startswith(f"5xx on /{ENV}/vizconfig/: ")
    bad, good = history("3.0.0"), history("2.0.0")
    assert bad["rolledBackAt"] == record["endedAt"] and bad["rollbackReason"] == record["reason"]
    assert good["liveAt"] == record["endedAt"]
    entry = catalogue_entry()
    assert entry["live"] == "green" and entry["bake"]["status"] == "rolled-back"
    assert [h for h in entry["history"] if h["version"] == "3.0.0"][0]["rolledBackAt"]
    page = catalogue_page()
    assert 'data-bake="rolled-back"' in page
    assert f"blue 3.0.0 rolled back to green at {record['endedAt']}: 5xx on /{ENV}/vizconfig/" in page
    listing = subprocess.run([sys.executable, "-m", "bluegreen.delivery", "releases", "vizconfig", "--stack",
                              STACK], cwd=REPO, capture_output=True, text=True, timeout=60).stdout
    assert f"3.0.0 was rolled back at {record['endedAt']}: 5xx on /{ENV}/vizconfig/" in listing
    assert "ROLLED BACK" in listing.splitlines()[0]


def test_the_next_up_reports_the_disagreement_instead_of_flipping_again(deployment):
    before = containers()
    with pytest.raises(auto.CommandError) as failure:
        deployment.up()                 # the stack still says live: blue
    message = str(failure.value)
    assert "the stack disagrees with the bake watchdog" in message
    assert "bluegreen.services.vizconfig.live: blue (vizconfig 3.0.0) was rolled back to green" in message
    assert f"bluegreen/bake/{ENV}/vizconfig" in message and "5xx on" in message
    assert "live: green" in message and "blue.version: 3.0.1" in message
    assert kv(ALIAS) == "green" and containers() == before
    record = bake_record()
    # The rollback command accepts it: the alias is on green already, so it only records live.
    result = subprocess.run([sys.executable, "-m", "bluegreen.delivery", "rollback", "vizconfig", "--stack",
                             STACK], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"but the alias bluegreen/aliases/{ENV}/vizconfig names green, which serves " \
        in result.stdout, result.stdout
    assert (f"(the bake watchdog rolled 3.0.0 back at {record['endedAt']}: 5xx on") in result.stdout
    assert "that change is abandoned, no alias move" in result.stdout
    with open(os.path.join(REPO, "stacks", f"Pulumi.{STACK}.yaml"), encoding="utf-8") as handle:
        assert yaml.safe_load(handle)["config"]["bluegreen:services"]["vizconfig"]["live"] == "green"
    change(deployment, live="green")    # what the command recorded, in this test's copy too
    deployment.up()
    assert kv(ALIAS) == "green" and bake_record() == record
    assert containers() == before


# --- the standby watchdog --------------------------------------------------------------------------

def kill_acting() -> tuple[str, float, int]:
    """kill -9 of the acting watchdog's process (Docker restarts its container); (its name, when,
    how often its log said it stood by before)."""
    name = acting()
    stood_by = watchdog_log(name).count("standing by")
    pid = int(subprocess.run(["docker", "inspect", "-f", "{{.State.Pid}}", name], capture_output=True,
                             text=True, check=True).stdout)
    os.kill(pid, signal.SIGKILL)
    return name, time.monotonic(), stood_by


def taken_over(killed: str, killed_at: float) -> float:
    """Seconds from the kill until another watchdog holds the leader key (polled every 20 ms)."""
    holder, _ = wait_until(lambda: (name := acting()) not in (None, killed) and name, 30,
                           interval_s=0.02, what="the standby taking the leader key")
    return time.monotonic() - killed_at


def restarted_as_standby(killed: str, stood_by: int) -> None:
    """The killed watchdog runs again (Docker restarted it) and stands by."""
    wait_until(lambda: watchdog_log(killed).count("standing by") > stood_by and acting() != killed,
               30, interval_s=0.2, what=f"{killed} back as the standby")


def test_the_standby_takes_the_lead_within_seconds_of_the_acting_watchdog_dying(deployment):
    times = []
    for _ in range(3):
        killed, at, stood_by = kill_acting()
        times.append(round(taken_over(killed, at), 2))
        restarted_as_standby(killed, stood_by)
    FIGURES["takeover_idle_s"] = times
    FIGURES["takeover_idle_median_s"] = statistics.median(times)
    assert max(times) < 10, times


class KillOnBake(InBackground):
    """Kills the acting watchdog as soon as the bake record says `baking` for `version`, then
    keeps (when, holder) of the leader key's changes (polled every 20 ms, bounded)."""

    def __init__(self, version: str, max_seconds: float = 240):
        self.version, self.max_seconds = version, max_seconds
        self.killed: tuple[str, float, int] | None = None
        self.holders: list[tuple[float, str | None]] = []

    def _run(self):
        start = time.monotonic()
        while not self._stop.is_set() and time.monotonic() - start < self.max_seconds:
            try:
                if self.killed is None:
                    record = bake_record() or {}
                    if (record.get("status"), record.get("version")) == ("baking", self.version):
                        self.killed = kill_acting()
                else:
                    holder = acting()
                    if not self.holders or self.holders[-1][1] != holder:
                        self.holders.append((time.monotonic(), holder))
            except requests.RequestException:
                pass
            time.sleep(0.02)


def test_killing_the_acting_watchdog_during_a_failing_bake_the_standby_rolls_it_back(repo, deployment):
    repo.edit("four", fail_root=True)
    change(deployment, blue={"version": "3.0.1"}, live="green")
    deployment.up()                     # the broken 3.0.1 to the offline colour
    change(deployment, live="blue")
    with KillOnBake("3.0.1") as killer, RequestLoop(STABLE, rate=20, keep_alive=False,
                                                    max_seconds=120) as loop:
        deployment.up()                 # flips to blue; the bake starts, its watchdog dies
        wait_until(lambda: killer.killed, 20, what="the kill during the bake")
        record, _ = wait_until(lambda: (r := bake_record())["version"] == "3.0.1" and r["status"] != "baking" and r, BAKE_S,
                               interval_s=0.05, what="the bake's end")
        rolled_back_at = time.monotonic()
        wait_until(lambda: answer()[:2] == ("2.0.0", "green"), 10, what="v2 served again")
    killed, killed_at, stood_by = killer.killed
    new = [(t, h) for t, h in killer.holders if h not in (None, killed)]
    assert new, killer.holders
    takeover_s = new[0][0] - killed_at
    FIGURES.update(takeover_during_bake_s=round(takeover_s, 2),
                   kill_to_rolled_back_s=round(rolled_back_at - killed_at, 2),
                   takeover_client_requests=len(loop.results),
                   takeover_failed_requests=len(loop.failures),
                   takeover_failed_requests_5xx=len([r for r in loop.results if r[1] >= 500]))
    assert takeover_s < 10, killer.holders
    assert (record["status"], record["version"], record["previous"]) == ("rolled-back", "3.0.1", "green")
    assert kv(ALIAS) == "green"
    rolled_back = f"ROLLED BACK {ENV}/vizconfig blue 3.0.1"
    assert rolled_back in watchdog_log(new[0][1]) and rolled_back not in watchdog_log(killed)
    restarted_as_standby(killed, stood_by)
    status = subprocess.run([sys.executable, "-m", "bluegreen.delivery", "status", "vizconfig", "--stack", STACK],
                            cwd=REPO, capture_output=True, text=True, timeout=60).stdout
    assert f"  watchdog: {acting()} on local acts since " in status, status


def test_a_frozen_acting_watchdog_loses_the_lead_to_the_standby_within_seconds(deployment):
    # A frozen process still accepts connections on its port (the kernel answers), so only the
    # TTL its heartbeat stops passing can end its session.
    frozen = acting()
    subprocess.run(["docker", "pause", frozen], check=True, capture_output=True)
    paused_at = time.monotonic()
    try:
        takeover_s = taken_over(frozen, paused_at)
    finally:
        subprocess.run(["docker", "unpause", frozen], check=True, capture_output=True)
    FIGURES["takeover_frozen_s"] = round(takeover_s, 2)
    assert takeover_s < 10
    # Thawed, it passes its check again but holds nothing: its session ended with the TTL.
    time.sleep(2)
    assert acting() not in (None, frozen)
