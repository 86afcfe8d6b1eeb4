"""The deploy lock and the audit trail end to end, on a real Consul: a rollback started while
another command holds the service's lock is refused naming the holder, and with --lock-wait it
flips once the lock is released (0 failed requests under a keep-alive client loop); a holder
killed with kill -9 frees the lock within its session's TTL; `audit` lists what happened."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from components.model.audit import Operator
from delivery.lock import DeployLock

from e2e_harness import (LOG_DIR, REPO, RequestLoop, deployed, deployer_consul, platform_config, tiny_service,
                         wait_until)

STACK = ENV = "e2e-ops"
PORTS = {"consul": 28450, "serf": 28451, "server": 28452, "registry": 28453, "proxy": 28454}
CONSUL = f"http://127.0.0.1:{PORTS['consul']}"
STABLE = f"http://127.0.0.1:{PORTS['proxy']}/{ENV}/tiny/"
LOCK = f"{CONSUL}/v1/kv/bluegreen/locks/{ENV}/tiny"
FIGURES: dict = {}


@pytest.fixture(scope="module")
def deployment():
    manifest = tiny_service(tempfile.mkdtemp(prefix="bluegreen-ops-"), "tiny")
    config = platform_config(PORTS, ENV)
    config["bluegreen:services"] = {"tiny": {"manifest": manifest, "live": "blue", "gateTimeout": 30,
                                             "blue": {"version": "1.0.0"},
                                             "green": {"version": "2.0.0"}}}
    with deployed(STACK, config, FIGURES, "operations") as deployment:
        deployment.up()
        yield deployment


def delivery(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "delivery", *args], cwd=REPO, capture_output=True,
                            text=True, timeout=timeout)
    logged(" ".join(args), result.stdout + result.stderr)
    return result


def logged(command: str, output: str) -> None:
    """What each command printed, in reports/e2e/e2e-ops-commands.log."""
    with open(os.path.join(LOG_DIR, f"{STACK}-commands.log"), "a", encoding="utf-8") as log:
        log.write(f"$ {command}\n{output}\n")


def alias() -> str:
    return deployer_consul(STACK).get(f"{CONSUL}/v1/kv/bluegreen/aliases/{ENV}/tiny?raw", timeout=3).text


def lock_holder() -> dict | None:
    response = deployer_consul(STACK).get(LOCK, timeout=3)
    return None if response.status_code == 404 else response.json()[0]


def hold_lock() -> subprocess.Popen:
    """Another command holding the lock: `python -m delivery.lock` around a long sleep."""
    holder = subprocess.Popen([sys.executable, "-m", "delivery.lock", "--stack", STACK, "--",
                               "sleep", "120"], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, start_new_session=True)
    wait_until(lambda: (lock_holder() or {}).get("Session"), 30, interval_s=0.1, what="the holder's lock")
    return holder


def stop(holder: subprocess.Popen) -> str:
    if holder.poll() is None:
        os.killpg(holder.pid, signal.SIGKILL)
    return holder.communicate(timeout=30)[0]


def test_a_rollback_is_refused_while_another_command_holds_the_lock_then_waits_for_it(deployment):
    assert alias() == "blue"
    holder = hold_lock()
    try:
        refused = delivery("rollback", "tiny", "--stack", STACK, "--to", "2.0.0")
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert f"rollback REFUSED: the deploy lock of tiny in {ENV} is held by " in refused.stdout
        assert "(sleep 120) since " in refused.stdout and f"process {holder.pid} on " in refused.stdout
        assert f"./bg lock release tiny --stack {STACK}" in refused.stdout
        assert alias() == "blue"
        status = delivery("lock", "status", "tiny", "--stack", STACK)
        assert status.stdout.startswith(f"tiny in {ENV}: held by ") and "(sleep 120)" in status.stdout
        with RequestLoop(STABLE, keep_alive=True) as loop:
            waiting = subprocess.Popen(
                [sys.executable, "-m", "delivery", "rollback", "tiny", "--stack", STACK, "--to",
                 "2.0.0", "--lock-wait", "2m"], cwd=REPO, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, text=True)
            time.sleep(3)
            assert waiting.poll() is None and alias() == "blue", "it did not wait"
            released_at = time.monotonic()
            released = delivery("lock", "release", "tiny", "--stack", STACK)
            assert released.returncode == 0 and "released the deploy lock of tiny" in released.stdout
            wait_until(lambda: alias() == "green", 60, interval_s=0.05, what="the flip")
            # From the start of `lock release` (itself about 2 s: Python, then the token).
            FIGURES["waiting_rollback_alias_moved_after_release_s"] = round(
                time.monotonic() - released_at, 2)
            output, _ = waiting.communicate(timeout=300)
        logged("rollback tiny --stack e2e-ops --to 2.0.0 --lock-wait 2m", output)
        FIGURES["waiting_rollback_done_after_release_s"] = round(time.monotonic() - released_at, 1)
        assert waiting.returncode == 0, output
        assert "lock: took the deploy lock of tiny in e2e-ops after waiting" in output
        assert f"alias bluegreen/aliases/{ENV}/tiny: blue -> green" in output
        FIGURES["waiting_rollback_requests"] = len(loop.results)
        FIGURES["waiting_rollback_failed_requests"] = len(loop.failures)
        assert len(loop.results) > 10 and loop.failures == [], loop.failures[:5]
        assert {r[2] for r in loop.results} <= {"blue", "green"} and loop.results[-1][2] == "green"
    finally:
        told = stop(holder)
    assert "was taken away" in told, told
    assert lock_holder() is None, "the rollback kept its lock"


def test_a_holder_killed_with_kill_9_frees_the_lock_within_its_ttl(deployment):
    holder = hold_lock()
    killed = time.monotonic()
    os.killpg(holder.pid, signal.SIGKILL)
    holder.communicate(timeout=30)
    wait_until(lambda: lock_holder() is None, 40, interval_s=0.2, what="the lock to free")
    freed = time.monotonic() - killed
    FIGURES["killed_holder_lock_freed_s"] = round(freed, 1)
    assert freed <= 25, "a 10s session TTL lapses within two TTLs"
    start = time.monotonic()
    result = delivery("rollback", "tiny", "--stack", STACK)   # back to 1.0.0: the lock is free
    FIGURES["rollback_alias_only_under_lock_s"] = round(time.monotonic() - start, 1)
    assert result.returncode == 0, result.stdout + result.stderr
    assert alias() == "blue"


def timed(command: list[str]) -> float:
    start = time.monotonic()
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return round(time.monotonic() - start, 2)


def test_the_lock_costs_a_deploy_a_few_seconds(deployment):
    lock = DeployLock(CONSUL, deployment.deployer_token(), ENV, "tiny", STACK, Operator("t", "t"))
    start = time.monotonic()
    lock.acquire()
    FIGURES["lock_acquire_s"] = round(time.monotonic() - start, 3)
    waiter = DeployLock(CONSUL, deployment.deployer_token(), ENV, "tiny", STACK, Operator("w", "w"),
                        wait_s=30)
    thread = threading.Thread(target=waiter.acquire, daemon=True)
    thread.start()
    time.sleep(1)
    start = time.monotonic()
    lock.release()
    FIGURES["lock_release_s"] = round(time.monotonic() - start, 3)
    thread.join(timeout=30)
    FIGURES["lock_handoff_to_a_waiter_s"] = round(time.monotonic() - start, 3)
    assert waiter.session and not thread.is_alive()
    waiter.release()
    up = ["pulumi", "up", "--yes", "--skip-preview", "--stack", STACK]
    wrapper = [sys.executable, "-m", "delivery.lock", "--stack", STACK, "--"]
    FIGURES["true_bare_s"], FIGURES["true_under_lock_s"] = timed(["true"]), timed([*wrapper, "true"])
    FIGURES["pulumi_up_bare_s"], FIGURES["pulumi_up_under_lock_s"] = timed(up), timed([*wrapper, *up])
    assert lock_holder() is None


def test_audit_lists_the_flips_refusals_and_releases_with_their_actor(deployment):
    listing = delivery("audit", "tiny", "--stack", STACK, "--since", "1d")
    assert listing.returncode == 0, listing.stdout + listing.stderr
    lines = listing.stdout.splitlines()
    assert lines[0].split()[:3] == ["TIME", "(UTC)", "SERVICE"]
    records = json.loads(delivery("audit", "tiny", "--stack", STACK, "--json").stdout)
    events = [(r["event"], r["from"], r["to"]) for r in records]
    assert events == [("refused", None, None), ("unlocked", None, None), ("flip", "blue", "green"),
                      ("rollback", "blue", "green"), ("flip", "green", "blue"),
                      ("rollback", "green", "blue")], events
    flip = records[2]
    assert flip["version"] == "2.0.0" and "rollback tiny --stack e2e-ops --to 2.0.0" in flip["command"]
    assert flip["actor"] and "@" in flip["actor"] and flip["environment"] == ENV
    assert "(sleep 120)" in records[0]["reason"]
    assert records[1]["command"].endswith("lock release tiny --stack e2e-ops")
    assert any("flip" in line and "blue -> green" in line and "2.0.0" in line for line in lines)
    FIGURES["audit_records"] = len(records)
