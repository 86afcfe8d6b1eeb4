"""The standby watchdog: which of the platform's watchdogs acts (model.election's decisions, the
registration and session that tie the leader key to a watchdog's process and host), that only the
key's holder writes, and a standby taking the key once its holder's session ends."""

import base64
import json
from types import SimpleNamespace

from hypothesis import given, strategies as st

from bluegreen.components import naming
from bluegreen.components.consul.records import ServiceRecords
from bluegreen.components.model import election
from bluegreen.components.platform.watchdog import WatchdogArgs
from bluegreen.delivery.status import status_lines, status_of

from consul_agent import FakeAgent
from test_bake import watchdog

SESSIONS = st.sampled_from(["s1", "s2", "s3"])


def test_without_a_session_a_watchdog_makes_one_whoever_holds_the_key():
    assert election.step(None, None) == election.NEW_SESSION
    assert election.step(None, "s2") == election.NEW_SESSION


def test_a_free_key_is_acquired_a_held_one_is_led_or_waited_on():
    assert election.step("s1", None) == election.ACQUIRE
    assert election.step("s1", "s1") == election.LEAD
    assert election.step("s1", "s2") == election.STANDBY


@given(holder=st.none() | SESSIONS, own=st.lists(SESSIONS, min_size=2, max_size=3, unique=True))
def test_at_most_one_watchdog_leads_whatever_the_key_says(holder, own):
    steps = [election.step(session, holder) for session in own]
    assert steps.count(election.LEAD) <= 1
    assert (election.LEAD in steps) == (holder in own)
    if holder is None:
        assert set(steps) == {election.ACQUIRE}


def test_the_agent_checks_the_watchdogs_own_port_every_second_passing_from_the_start():
    body = election.registration("bluegreen-p-watchdog-2", 40123)
    assert (body["ID"], body["Name"]) == ("bluegreen-p-watchdog-2", "bluegreen-watchdog")
    alive, progress = body["Checks"]
    assert alive["CheckID"] == election.check_id("bluegreen-p-watchdog-2")
    assert (alive["TCP"], alive["Interval"], alive["Status"]) == ("127.0.0.1:40123", "1s", "passing")
    # A frozen process's port still accepts connections: only a TTL its heartbeat passes sees it.
    assert progress["CheckID"] == election.progress_check_id("bluegreen-p-watchdog-2")
    assert (progress["TTL"], progress["Status"]) == (f"{election.PROGRESS_TTL_S}s", "passing")
    assert election.HEARTBEAT_S * 3 <= election.PROGRESS_TTL_S


def test_the_session_ends_with_either_of_the_watchdogs_checks_or_its_node_and_takes_the_key_at_once():
    body = election.session_body("w1")
    assert body["NodeChecks"] == ["serfHealth"]
    assert body["ServiceChecks"] == [{"ID": election.check_id("w1")},
                                     {"ID": election.progress_check_id("w1")}]
    assert (body["LockDelay"], body["Behavior"]) == ("0s", "delete")


def test_the_holder_record_names_the_watchdog_and_its_host():
    assert json.loads(election.holder_record("w1", "lab1", "2026-12-07T03:00:00Z")) == \
        {"watchdog": "w1", "host": "lab1", "since": "2026-12-07T03:00:00Z"}


def test_a_watchdog_number_outside_the_pair_is_refused():
    for number in (0, election.WATCHDOGS + 1):
        try:
            WatchdogArgs(stack="s", image="i", host=None, proxy_url="u", provider=None,
                         consul_token="t", number=number)
        except ValueError as error:
            assert f"watchdog number {number}" in str(error)
        else:
            raise AssertionError(number)


def leader_key(session: str | None, index: int):
    value = base64.b64encode(b'{"watchdog": "w1"}').decode()
    item = {"Value": value, "ModifyIndex": index, **({"Session": session} if session else {})}
    return 200, {"X-Consul-Index": str(index)}, [item]


def agent(monkeypatch, answers: dict) -> FakeAgent:
    monkeypatch.setattr(watchdog, "AGENT", SimpleNamespace(address="http://agent:8500", token="t"))
    return FakeAgent(answers).install(monkeypatch)


def test_a_standby_blocks_on_the_key_and_takes_it_once_its_holder_is_gone(monkeypatch):
    key = naming.watchdog_lock_key()
    fake = agent(monkeypatch, {
        f"/v1/kv/{key}?acquire=": [(200, {}, "true")],
        f"/v1/kv/{key}": [leader_key("theirs", 40), (404, {"X-Consul-Index": "41"}, None)],
        "/v1/session/info/": [(200, {}, [{"ID": "mine"}])],
    })
    monkeypatch.setattr(watchdog, "LEADER", watchdog.Leader(port=4000, session="mine"))
    watchdog.await_lead()
    reads = [path for method, path, _ in fake.calls if method == "GET" and "/kv/" in path]
    assert reads == [f"/v1/kv/{key}", f"/v1/kv/{key}?index=40&wait={watchdog.WAIT_S}s"]
    assert fake.calls[-1][:2] == ("PUT", f"/v1/kv/{key}?acquire=mine")
    assert watchdog.LEADER.acting


def test_a_watchdog_whose_session_ended_registers_again_and_makes_a_new_one(monkeypatch):
    key = naming.watchdog_lock_key()
    fake = agent(monkeypatch, {
        f"/v1/kv/{key}?acquire=": [(200, {}, "true")],
        f"/v1/kv/{key}": [(404, {"X-Consul-Index": "41"}, None)],
        "/v1/session/info/": [(200, {}, []), (200, {}, [{"ID": "new"}])],
        "/v1/session/create": [(200, {}, {"ID": "new"})],
        "/v1/agent/service/": [(200, {}, None)],
    })
    monkeypatch.setattr(watchdog, "LEADER", watchdog.Leader(port=4000, session="old"))
    watchdog.await_lead()
    puts = [path for method, path, _ in fake.calls if method == "PUT"]
    assert puts == [f"/v1/agent/service/deregister/{watchdog.IDENT}", "/v1/agent/service/register",
                    "/v1/session/create", f"/v1/kv/{key}?acquire=new"]


def test_every_write_is_void_unless_the_writer_holds_the_leader_key(monkeypatch):
    fake = agent(monkeypatch, {"/v1/txn": [(409, {}, None)]})
    monkeypatch.setattr(watchdog, "LEADER", watchdog.Leader(session="mine"))
    assert watchdog.transact({"bluegreen/aliases/e/s": ("green", 7)}) is False
    [(_, _, operations)] = fake.calls
    guard, write = operations
    assert guard == {"KV": {"Verb": "check-session", "Key": naming.watchdog_lock_key(), "Session": "mine"}}
    assert write["KV"]["Verb"] == "cas"


def test_status_names_the_acting_watchdog_when_one_holds_the_key():
    value = election.holder_record("bluegreen-p-watchdog-2", "local", "2026-12-07T03:00:00Z")
    status = status_of("vizconfig", ServiceRecords(), watchdog=value)
    assert status["watchdog"] == {"watchdog": "bluegreen-p-watchdog-2", "host": "local",
                                  "since": "2026-12-07T03:00:00Z"}
    assert "  watchdog: bluegreen-p-watchdog-2 on local acts since 2026-12-07T03:00:00Z" in status_lines(status)
    for nobody in (None, "", "not json"):
        status = status_of("vizconfig", ServiceRecords(), watchdog=nobody)
        assert status["watchdog"] is None and not any("watchdog:" in line for line in status_lines(status))
