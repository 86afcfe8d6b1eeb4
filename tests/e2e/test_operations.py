"""The deploy lock and the audit trail end to end, on a real Consul: a rollback started while
another command holds the service's lock is refused naming the holder, and with --lock-wait it
flips once the lock is released (0 failed requests under a keep-alive client loop); a holder
killed with kill -9 frees the lock within its session's TTL; `audit` lists what happened.
Then hooks (webhooks the test runs on 127.0.0.1): a vetoing hook and one that does not answer
keep traffic where it is (0 failed requests), a `confirm: manual` flip waits for `approve` and
then flips, a `pulumi up` flip asks and tells them too, notifications arrive, the audit lists it."""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

import pytest
import requests
import yaml

from bluegreen.components.model.audit import Operator
from bluegreen.delivery.lock import DeployLock

from e2e_harness import (LOG_DIR, REPO, RequestLoop, deployed, deployer_consul, get_json, platform_config,
                         tiny_service, wait_until)

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
    result = subprocess.run([sys.executable, "-m", "bluegreen.delivery", *args], cwd=REPO, capture_output=True,
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
    """Another command holding the lock: `python -m bluegreen.delivery.lock` around a long sleep."""
    holder = subprocess.Popen([sys.executable, "-m", "bluegreen.delivery.lock", "--stack", STACK, "--",
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
                [sys.executable, "-m", "bluegreen.delivery", "rollback", "tiny", "--stack", STACK, "--to",
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
    wrapper = [sys.executable, "-m", "bluegreen.delivery.lock", "--stack", STACK, "--"]
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


# --- hooks, the approval gate and notifications (model.hooks) -----------------------------------

class Webhook:
    """A webhook on 127.0.0.1 the test runs: answers `status` and `body` after `delay` seconds and
    keeps every JSON body it was sent."""

    def __init__(self, status: int = 200, body: str = "", delay: float = 0.0):
        self.got: list[dict] = []
        self.status, self.body, self.delay = status, body, delay
        hook = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                hook.got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                time.sleep(hook.delay)
                data = hook.body.encode()
                self.send_response(hook.status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def answer(self, status: int = 200, body: str = "", delay: float = 0.0) -> None:
        self.status, self.body, self.delay = status, body, delay

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def webhooks():
    made = {name: Webhook() for name in ("before", "after", "rollback", "notify")}
    yield made
    for hook in made.values():
        hook.close()


def set_entry(deployment, **entry) -> None:
    """The service's stack entry as the stack file holds it now (commands record live: there),
    with `entry`'s keys set."""
    with open(deployment.path, encoding="utf-8") as handle:
        deployment.config = yaml.safe_load(handle)["config"]
    tiny = deployment.config["bluegreen:services"]["tiny"]
    tiny.update(entry)
    deployment.write_config()


def hooks_entry(webhooks, timeout: str = "2s") -> dict:
    return {"beforeFlip": webhooks["before"].url, "afterFlip": webhooks["after"].url,
            "rollback": webhooks["rollback"].url, "timeout": timeout}


def vetoed_rollback() -> tuple[subprocess.CompletedProcess, RequestLoop]:
    with RequestLoop(STABLE) as loop:
        time.sleep(1)
        result = delivery("rollback", "tiny", "--stack", STACK, "--to", "2.0.0")
        time.sleep(1)
    return result, loop


def test_a_vetoing_hook_or_one_that_does_not_answer_keeps_traffic_where_it_is(deployment, webhooks):
    FIGURES["hooks_started_at"] = time.time()
    assert alias() == "blue"
    set_entry(deployment, hooks=hooks_entry(webhooks), notify=webhooks["notify"].url)
    webhooks["before"].answer(409, '{"allow": false, "reason": "change freeze"}')
    result, loop = vetoed_rollback()
    assert result.returncode == 2, result.stdout + result.stderr
    assert ("rollback VETOED: the beforeFlip hook vetoed the flip of tiny in e2e-ops blue -> green "
            "(answered 409: change freeze); traffic stays on blue; nothing was changed") in result.stdout
    asked = webhooks["before"].got[-1]
    assert {k: asked[k] for k in ("event", "service", "environment", "from", "to", "version", "stack")} == \
        {"event": "rollback", "service": "tiny", "environment": ENV, "from": "blue", "to": "green",
         "version": "2.0.0", "stack": STACK}
    assert "@sha256:" in asked["digest"] and "@" in asked["actor"]
    assert webhooks["notify"].got[-1]["text"].startswith(
        "bluegreen: flip vetoed: tiny in e2e-ops: blue -> green (2.0.0) by ")
    assert webhooks["after"].got == [] and webhooks["rollback"].got == []
    FIGURES["vetoed_rollback_requests"], FIGURES["vetoed_rollback_failed_requests"] = \
        len(loop.results), len(loop.failures)
    assert len(loop.results) > 10 and loop.failures == [] and {r[2] for r in loop.results} == {"blue"}
    assert alias() == "blue"

    webhooks["before"].answer(200, delay=5)
    start = time.monotonic()
    result, loop = vetoed_rollback()
    FIGURES["silent_hook_rollback_s"] = round(time.monotonic() - start, 1)
    assert result.returncode == 2 and "(no answer within 2s); traffic stays on blue" in result.stdout
    FIGURES["silent_hook_failed_requests"] = len(loop.failures)
    assert loop.failures == [] and {r[2] for r in loop.results} == {"blue"} and alias() == "blue"


def approval_waiting() -> dict | None:
    response = deployer_consul(STACK).get(f"{CONSUL}/v1/kv/bluegreen/approvals/{ENV}/tiny?raw", timeout=3)
    return response.json() if response.status_code == 200 else None


def test_a_held_flip_waits_for_approve_then_flips_and_tells_the_hooks(deployment, webhooks):
    nothing = delivery("approve", "tiny", "--stack", STACK)
    assert nothing.returncode == 2 and nothing.stdout.strip() == (
        f"approve: no flip waits for approval at bluegreen/approvals/{ENV}/tiny; nothing was approved")
    webhooks["before"].answer(200)
    set_entry(deployment, confirm="manual", confirmTimeout="2m")
    with RequestLoop(STABLE) as loop:
        held = subprocess.Popen([sys.executable, "-m", "bluegreen.delivery", "rollback", "tiny", "--stack", STACK,
                                 "--to", "2.0.0"], cwd=REPO, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        waiting, _ = wait_until(approval_waiting, 60, interval_s=0.2, what="the held flip's record")
        assert waiting["status"] == "waiting" and (waiting["from"], waiting["to"]) == ("blue", "green")
        time.sleep(2)
        assert held.poll() is None and alias() == "blue", "the flip did not wait"
        approved_at = time.monotonic()
        approved = delivery("approve", "tiny", "--stack", STACK)
        assert approved.returncode == 0, approved.stdout + approved.stderr
        assert approved.stdout.startswith(f"approved the flip of tiny in {ENV}: blue -> green (2.0.0) by ")
        wait_until(lambda: alias() == "green", 60, interval_s=0.05, what="the approved flip")
        FIGURES["approved_flip_alias_moved_after_approve_s"] = round(time.monotonic() - approved_at, 2)
        output, _ = held.communicate(timeout=300)
    logged("rollback tiny --stack e2e-ops --to 2.0.0 (held, then approved)", output)
    assert held.returncode == 0, output
    assert "waits for approval (up to 120s): run ./bg approve tiny --stack e2e-ops" in output
    assert "confirm: approved by " in output and "alias bluegreen/aliases/e2e-ops/tiny: blue -> green" in output
    FIGURES["approved_flip_requests"], FIGURES["approved_flip_failed_requests"] = \
        len(loop.results), len(loop.failures)
    assert loop.failures == [] and loop.results[-1][2] == "green"
    told = webhooks["rollback"].got[-1]
    assert (told["event"], told["from"], told["to"], told["version"]) == ("rollback", "blue", "green", "2.0.0")
    texts = [m["text"] for m in webhooks["notify"].got]
    assert any(t.startswith("bluegreen: flip held: tiny in e2e-ops: blue -> green (2.0.0)") for t in texts)
    assert texts[-1].startswith("bluegreen: rolled back: tiny in e2e-ops: blue -> green (2.0.0) by ")
    assert approval_waiting() is None


def test_a_pulumi_up_flip_asks_the_hooks_and_a_hook_may_approve_it(deployment, webhooks):
    webhooks["before"].answer(200, '{"approve": true}')
    after = len(webhooks["after"].got)
    set_entry(deployment, live="blue")
    with RequestLoop(STABLE) as loop:
        start = time.monotonic()
        deployment.up()
        FIGURES["pulumi_up_flip_with_hooks_s"] = round(time.monotonic() - start, 1)
    assert alias() == "blue"
    asked = webhooks["before"].got[-1]
    assert (asked["event"], asked["from"], asked["to"], asked["version"]) == ("flip", "green", "blue", "1.0.0")
    assert "@sha256:" in asked["digest"] and asked["actor"] and asked["stack"] == STACK
    assert webhooks["after"].got[after:] and webhooks["after"].got[-1]["to"] == "blue"
    assert webhooks["notify"].got[-1]["text"].startswith("bluegreen: flipped: tiny in e2e-ops: green -> blue (1.0.0)")
    FIGURES["pulumi_up_flip_failed_requests"] = len(loop.failures)
    assert loop.failures == []


def test_audit_lists_the_vetoes_the_approval_and_the_flip_with_their_actors(deployment):
    records = json.loads(delivery("audit", "tiny", "--stack", STACK, "--json").stdout)
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(FIGURES["hooks_started_at"] - 1))
    events = [(r["event"], r["from"], r["to"]) for r in records if r["at"] >= since]
    assert events == [("vetoed", "blue", "green"), ("vetoed", "blue", "green"),
                      ("approved", "blue", "green"), ("flip", "blue", "green"),
                      ("rollback", "blue", "green")], events
    recent = [r for r in records if r["at"] >= since]
    assert all("@" in r["actor"] for r in recent)
    assert "change freeze" in recent[0]["reason"] and recent[2]["command"].endswith("approve tiny --stack e2e-ops")
    listing = delivery("audit", "tiny", "--stack", STACK, "--since", "1h").stdout.splitlines()
    assert any(" vetoed " in line and "blue -> green" in line for line in listing)
    assert any(" approved " in line and "blue -> green" in line for line in listing)



def catalogue_audit() -> list | None:
    services = get_json(f"http://127.0.0.1:{PORTS['proxy']}/catalogue.json")["services"]
    [tiny] = [s for s in services if s["entry"]["service"] == "tiny" and s["entry"]["environment"] == ENV]
    return [(e["event"], e["actor"]) for e in tiny["audit"]]


def test_the_catalogue_shows_the_last_five_events_of_the_audit_trail(deployment):
    events, _ = wait_until(lambda: (lambda got: got if got and got[-1][0] == "rollback" else None)(
        catalogue_audit()), 30, interval_s=0.5, what="the audit trail in the catalogue")
    assert [event for event, _ in events] == ["vetoed", "vetoed", "approved", "flip", "rollback"]
    assert all("@" in actor for _, actor in events)
    page = requests.get(f"http://127.0.0.1:{PORTS['proxy']}/catalogue/", timeout=5).text
    assert 'data-audit="approved"' in page and "blue &rarr; green by " in page
