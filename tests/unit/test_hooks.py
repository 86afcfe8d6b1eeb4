"""Hooks, the approval gate and notifications around a flip: the stack entry's fields, the
payload, what an answer (or none) decides, the Slack-compatible message; then the HTTP side
against servers on 127.0.0.1 and the gate against a fake Consul KV."""

from __future__ import annotations

import copy
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bluegreen.components.consul import hooks as flip_hooks
from bluegreen.components.consul import route_proof
from bluegreen.components import naming
from bluegreen.components.model import hooks
from bluegreen.components.model.config import parse_stack_config
from bluegreen.components.model.validation import ConfigError
from test_config import BASE, ROOT

PAYLOAD = hooks.flip_payload(event=hooks.FLIP, service="tiny", environment="prod", before="blue",
                             after="green", version="2.0.0", digest="reg/tiny@sha256:" + "a" * 64,
                             actor="ana@ci", stack="prod")


def service(**entry):
    data = copy.deepcopy(BASE)
    data["services"]["vizconfig"].update(entry)
    return parse_stack_config("integration", data, ROOT).services[0]


# --- the stack entry -----------------------------------------------------------------------------

def test_no_hooks_unless_asked():
    assert service().hooks == hooks.NO_HOOKS and not hooks.NO_HOOKS.gated


def test_the_stack_entry_names_hooks_confirm_and_notify():
    settings = service(hooks={"beforeFlip": "http://127.0.0.1:9/before", "afterFlip": "https://h/a",
                              "rollback": "http://h/r", "timeout": "2s"},
                       confirm="manual", confirmTimeout="5m", notify="https://hooks.slack.example/x")
    assert settings.hooks == hooks.Hooks(before="http://127.0.0.1:9/before", after="https://h/a",
                                         rollback="http://h/r", notify="https://hooks.slack.example/x",
                                         timeout_s=2.0, confirm="manual", confirm_timeout_s=300.0)
    assert settings.hooks.gated
    assert hooks.Hooks.from_record(settings.hooks.as_record()) == settings.hooks


@pytest.mark.parametrize("entry, field, advice", [
    ({"hooks": {"beforeFlip": "ftp://x"}}, "hooks.beforeFlip", "is not an http(s) URL"),
    ({"hooks": {"before": "http://x"}}, "hooks.before", "allowed keys here are: beforeFlip"),
    ({"hooks": {"timeout": "2m"}}, "hooks.timeout", "write 500ms to 60s"),
    ({"confirm": "yes"}, "confirm", "use one of: auto, manual"),
    ({"confirmTimeout": "5m"}, "confirmTimeout", "set confirm: manual"),
    ({"confirm": "manual", "confirmTimeout": "2s"}, "confirmTimeout", "write 10s to 1d"),
    ({"notify": 5}, "notify", "write the webhook's URL"),
])
def test_a_bad_field_names_itself_and_the_fix(entry, field, advice):
    with pytest.raises(ConfigError) as raised:
        service(**entry)
    assert raised.value.field == f"bluegreen.services.vizconfig.{field}"
    assert advice in str(raised.value)


# --- payload, answers, messages ------------------------------------------------------------------

def test_the_payload_carries_the_issue_s_fields():
    assert set(PAYLOAD) == set(hooks.PAYLOAD_FIELDS)
    assert (PAYLOAD["from"], PAYLOAD["to"], PAYLOAD["actor"]) == ("blue", "green", "ana@ci")
    with pytest.raises(ValueError):
        hooks.flip_payload(event="deploy", service="s", environment="e", before="blue", after="green",
                           version=None, digest=None, actor="a")


def test_a_2xx_allows_and_may_approve_anything_else_vetoes():
    assert hooks.answer(200, "") == hooks.Answer(True, False, "answered 200")
    assert hooks.answer(204, '{"approve": true}').approved
    assert not hooks.answer(200, '{"approve": "yes"}').approved
    vetoed = hooks.answer(200, '{"allow": false, "reason": "change freeze"}')
    assert not vetoed.allowed and vetoed.reason == "answered allow: false: change freeze"
    assert hooks.answer(409, "frozen until Monday") == hooks.Answer(False, False,
                                                                      "answered 409: frozen until Monday")
    assert hooks.answer(None, "", "no answer within 2s") == hooks.Answer(False, False, "no answer within 2s")
    assert hooks.answer(None, "") == hooks.Answer(False, False, "no answer")


@given(st.integers(100, 599), st.text(max_size=300))
def test_only_a_2xx_without_allow_false_lets_a_flip_go(status, body):
    got = hooks.answer(status, body)
    assert got.allowed == (200 <= status < 300 and hooks._json_object(body).get("allow") is not False)
    assert not got.approved or got.allowed
    assert len(got.reason) < 300


def test_an_approval_approves_only_the_move_it_was_given():
    waiting = hooks.waiting_record(PAYLOAD, "2026-12-07T03:00:00Z")
    assert not hooks.approves(waiting, PAYLOAD)
    approved = hooks.approval_record(waiting, "bo@desk", "2026-12-07T03:01:00Z")
    assert hooks.approves(approved, PAYLOAD)
    assert not hooks.approves(approved, {**PAYLOAD, "version": "3.0.0"})
    assert not hooks.approves(approved, {**PAYLOAD, "to": "blue"})
    assert not hooks.approves(None, PAYLOAD)


def test_a_notification_is_slack_shaped_and_says_who_moved_what():
    message = hooks.notification(PAYLOAD)
    assert set(message) == {"text"}
    assert message["text"] == ("bluegreen: flipped: tiny in prod: blue -> green (2.0.0) by ana@ci, "
                               "digest sha256:" + "a" * 64)
    vetoed = hooks.notification({**PAYLOAD, "event": hooks.VETOED}, "beforeFlip answered 409")
    assert vetoed["text"].startswith("bluegreen: flip vetoed: tiny in prod") and "(beforeFlip" in vetoed["text"]
    assert hooks.veto_message(PAYLOAD, "the beforeFlip hook", "answered 409").endswith(
        "traffic stays on blue")
    assert hooks.approve_command(PAYLOAD) == "./bg approve tiny --stack prod"


# --- over HTTP -----------------------------------------------------------------------------------

class Target:
    """A webhook on 127.0.0.1 answering `status` and `body` after `delay` seconds; keeps what it got."""

    def __init__(self, status=200, body="", delay=0.0):
        self.got: list[dict] = []
        target = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                target.got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                time.sleep(delay)
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def targets():
    made = []

    def make(**kwargs):
        made.append(Target(**kwargs))
        return made[-1]
    yield make
    for target in made:
        target.close()


def test_a_vetoing_hook_raises_before_anything_and_notifies(targets):
    before, notify = targets(status=409, body="change freeze"), targets()
    said = []
    with pytest.raises(flip_hooks.FlipVetoed) as raised:
        flip_hooks.before_flip(hooks.Hooks(before=before.url, notify=notify.url), PAYLOAD,
                               "http://consul.invalid", "t", said.append)
    assert str(raised.value) == ("the beforeFlip hook vetoed the flip of tiny in prod blue -> green "
                                 "(answered 409: change freeze); traffic stays on blue")
    assert before.got == [PAYLOAD]
    assert notify.got[0]["text"].startswith("bluegreen: flip vetoed: tiny in prod: blue -> green")


def test_a_hook_that_does_not_answer_in_time_vetoes(targets):
    slow = targets(delay=2.0)
    start = time.monotonic()
    with pytest.raises(flip_hooks.FlipVetoed, match=r"\(no answer within 0.5s\); traffic stays on blue"):
        flip_hooks.before_flip(hooks.Hooks(before=slow.url, timeout_s=0.5), PAYLOAD, "", "t", print)
    assert time.monotonic() - start < 1.9


def test_telling_never_raises_and_says_what_failed(targets):
    said = []
    broken = targets(status=500)
    flip_hooks.after_flip(hooks.Hooks(after=broken.url, notify="http://127.0.0.1:9/nothing"),
                          PAYLOAD, said.append)
    assert broken.got == [PAYLOAD]
    assert said[0].endswith("answered 500 (ignored)") and "was not told (ConnectionError" in said[1]


def test_a_rollback_tells_the_rollback_hook_not_the_after_flip_one(targets):
    after, rollback = targets(), targets()
    flip_hooks.after_flip(hooks.Hooks(after=after.url, rollback=rollback.url),
                          {**PAYLOAD, "event": hooks.ROLLBACK}, print)
    assert after.got == [] and rollback.got[0]["event"] == "rollback"


# --- the approval gate against a fake KV ---------------------------------------------------------

class FakeKV:
    def __init__(self, monkeypatch, approve_after: int | None, by="bo@desk"):
        self.values: dict[str, str] = {}
        self.reads = 0
        self.approve_after, self.by = approve_after, by
        api = flip_hooks.consul_api
        monkeypatch.setattr(api, "kv_put", lambda _a, key, value, _t: self.values.__setitem__(key, value))
        monkeypatch.setattr(api, "kv_delete", lambda _a, key, _t, **_: self.values.pop(key, None))
        monkeypatch.setattr(api, "kv_entry", self.entry)

    def entry(self, _address, key, _token, index=0, wait_s=0.0):
        self.reads += 1
        if self.approve_after is not None and self.reads > self.approve_after and key in self.values:
            record = json.loads(self.values[key])
            self.values[key] = json.dumps(hooks.approval_record(record, self.by, "now"))
        time.sleep(0.01)
        value = self.values.get(key)
        return (flip_hooks.consul_api.KVEntry(value, self.reads) if value else None), self.reads


def test_a_held_flip_goes_once_approved_and_its_key_goes(monkeypatch):
    kv = FakeKV(monkeypatch, approve_after=2)
    said = []
    flip_hooks.before_flip(hooks.Hooks(confirm=hooks.MANUAL), PAYLOAD, "c", "t", said.append)
    assert said[0].endswith("waits for approval (up to 900s): run ./bg approve tiny --stack prod")
    assert said[-1] == "confirm: approved by bo@desk" and kv.values == {}


def test_a_held_flip_without_approval_times_out_leaving_traffic(monkeypatch):
    kv = FakeKV(monkeypatch, approve_after=None)
    monkeypatch.setattr(flip_hooks, "POLL_S", 0.01)
    gate = hooks.Hooks(confirm=hooks.MANUAL, confirm_timeout_s=10.0)
    monkeypatch.setattr(flip_hooks.time, "monotonic", iter(range(0, 10000, 3)).__next__)
    with pytest.raises(flip_hooks.FlipVetoed) as raised:
        flip_hooks.before_flip(gate, PAYLOAD, "c", "t", print)
    assert "no approval of the flip of tiny in prod blue -> green came within 10s" in str(raised.value)
    assert "traffic stays on blue" in str(raised.value) and "./bg approve tiny --stack prod" in str(raised.value)
    assert kv.values == {}


def test_a_hook_that_approves_opens_the_gate_without_waiting(monkeypatch, targets):
    kv = FakeKV(monkeypatch, approve_after=None)
    before = targets(body='{"approve": true}')
    flip_hooks.before_flip(hooks.Hooks(before=before.url, confirm=hooks.MANUAL), PAYLOAD, "c", "t", print)
    assert kv.reads == 0


# --- where pulumi up flips -----------------------------------------------------------------------

def test_the_alias_resource_asks_only_when_traffic_moves(monkeypatch, targets):
    before = targets(status=403)
    props = {"address": "c", "key": "bluegreen/aliases/prod/tiny", "value": "green", "token": "t",
             "hooks": hooks.Hooks(before=before.url).as_record(),
             "flip": {k: PAYLOAD[k] for k in route_proof.FLIP_FIELDS}}
    alias = {"value": "green"}
    monkeypatch.setattr(route_proof.consul_api, "kv_get", lambda *_: alias["value"])
    assert route_proof.asked(props) is None and before.got == []      # names green already
    assert route_proof.asked({**props, "hooks": None}) is None
    alias["value"] = "blue"
    with pytest.raises(RuntimeError, match="was not moved: the beforeFlip hook vetoed .* traffic stays on blue"):
        route_proof.asked(props)
    assert before.got == [PAYLOAD]


# --- the watchdog's flips ------------------------------------------------------------------------

def test_the_watchdog_tells_the_hooks_of_its_roll_back(monkeypatch, targets):
    from test_bake import watchdog
    rollback, notify = targets(), targets()
    settings = service(bakeTime="1m", hooks={"rollback": rollback.url}, notify=notify.url)
    key = watchdog.hooks_key("integration", "vizconfig")
    monkeypatch.setattr(watchdog, "kv_get", lambda k: (json.dumps(settings.hooks.as_record()), 3)
                        if k == key else (None, 0))
    bake = SimpleNamespace(service="vizconfig", environment="integration",
                           label=lambda: "vizconfig in integration")
    watchdog.told(bake, hooks.ROLLBACK, "green", "blue", "2.0.0", "real traffic on green: 12% 5xx")
    assert rollback.got == [hooks.flip_payload(
        event="rollback", service="vizconfig", environment="integration", before="green", after="blue",
        version="2.0.0", digest=None, actor="watchdog")]
    assert notify.got[0]["text"] == ("bluegreen: rolled back: vizconfig in integration: green -> blue "
                                     "(2.0.0) by watchdog (real traffic on green: 12% 5xx)")
    monkeypatch.setattr(watchdog, "kv_get", lambda k: (None, 0))
    watchdog.told(bake, hooks.FLIP, "blue", "green", "2.0.0", "rolled out")    # no hooks: nobody
    assert len(rollback.got) == 1 and len(notify.got) == 1


def test_a_service_with_hooks_writes_them_where_the_proxy_cannot_read():
    from bluegreen.components.consul import rules
    key = naming.hooks_key("production", "vizconfig")
    assert not any(key.startswith(prefix) for prefix in rules.PROXY_PREFIXES)
    assert any(key.startswith(prefix) for prefix in rules.WATCHDOG_READS)
    assert f'key_prefix "{naming.KV_ROOT}/hooks/production/" {{ policy = "write" }}' in \
        rules.deployer_rules("production")


# --- ./bg approve --------------------------------------------------------------------------------

def test_approve_marks_the_held_flip_with_its_audit_record_in_one_transaction(monkeypatch):
    from bluegreen.components.model.audit import Operator
    from bluegreen.delivery import approve
    key = naming.approval_key("prod", "tiny")
    waiting = hooks.waiting_record(PAYLOAD, "2026-12-07T03:00:00Z")
    transactions = []
    monkeypatch.setattr(approve.consul_api, "kv_get_indexed", lambda *_: (json.dumps(waiting), 41))
    monkeypatch.setattr(approve.consul_api, "kv_cas_many",
                        lambda _c, writes, _t, sets: transactions.append((writes, sets)) or True)
    record, index = approve.held_flip("c", key, "t")
    approve.approve("c", key, "t", record, index, Operator("bo@desk", "./bg approve tiny --stack prod"), "prod")
    [(writes, sets)] = transactions
    value, cas = writes[key]
    assert cas == 41 and hooks.approves(json.loads(value), PAYLOAD) and json.loads(value)["approvedBy"] == "bo@desk"
    [(audit_key, audit_value)] = sets.items()
    assert audit_key.startswith("bluegreen/audit/prod/tiny/")
    assert {k: json.loads(audit_value)[k] for k in ("event", "actor", "from", "to", "version")} == \
        {"event": "approved", "actor": "bo@desk", "from": "blue", "to": "green", "version": "2.0.0"}


@pytest.mark.parametrize("value, says", [
    (None, "no flip waits for approval at bluegreen/approvals/prod/tiny"),
    (json.dumps(hooks.approval_record(PAYLOAD, "x", "t")), "(approved already)"),
    ("garbage", "(it holds 'garbage')"),
])
def test_approve_refuses_when_nothing_waits(monkeypatch, value, says):
    from bluegreen.delivery import approve
    monkeypatch.setattr(approve.consul_api, "kv_get_indexed", lambda *_: (value, 3 if value else 0))
    with pytest.raises(approve.NothingHeld, match=re.escape(says)):
        approve.held_flip("c", naming.approval_key("prod", "tiny"), "t")


# --- wiring --------------------------------------------------------------------------------------

def test_the_alias_carries_the_hooks_and_what_it_moves_and_the_watchdog_gets_its_own_key():
    from test_wiring import ENV, config, run
    deployment = run(config(hooks={"beforeFlip": "http://127.0.0.1:9/b"}, confirm="manual"))
    alias = deployment.key(f"bluegreen/aliases/{ENV}/vizconfig")
    assert hooks.Hooks.from_record(alias.inputs["hooks"]) == hooks.Hooks(before="http://127.0.0.1:9/b",
                                                                        confirm="manual")
    flip = alias.inputs["flip"]
    assert (flip["service"], flip["environment"], flip["version"]) == ("vizconfig", ENV, "2.0.0")
    assert "@sha256:" in flip["digest"] and flip["actor"]
    written = deployment.key(naming.hooks_key(ENV, "vizconfig"))
    assert hooks.Hooks.from_record(json.loads(written.inputs["value"])).confirm == "manual"
    plain = run(config())
    assert plain.key(f"bluegreen/aliases/{ENV}/vizconfig").inputs.get("hooks") is None
    assert not [k for k in plain.keys if k.inputs["key"] == naming.hooks_key(ENV, "vizconfig")]


# --- where the delivery commands flip ------------------------------------------------------------

def fake_consul_for_flips(monkeypatch, alias="blue"):
    """delivery.flip against a fake Consul: the alias, and every transaction it writes."""
    from bluegreen.delivery import flip
    transactions = []
    monkeypatch.setattr(flip, "check_colour", lambda move: 0.0)
    monkeypatch.setattr(flip.consul_api, "kv_get_indexed", lambda *_: (alias, 7))
    monkeypatch.setattr(flip.consul_api, "kv_get", lambda *_: None)
    monkeypatch.setattr(flip.consul_api, "kv_keys", lambda *_: [])
    monkeypatch.setattr(flip.consul_api, "kv_cas_many",
                        lambda _c, writes, _t, sets=None: transactions.append((writes, sets)) or True)
    return flip, transactions


def a_move(flip, **entry):
    data = copy.deepcopy(BASE)
    data["services"]["vizconfig"].update(entry)
    config = parse_stack_config("integration", data, ROOT)
    return flip.Move(config, config.services[0], colour="green", expected="blue", token="t",
                     release="2.0.0", digest="reg/vizconfig@sha256:" + "b" * 64)


def test_a_vetoed_flip_writes_nothing_and_a_flip_that_goes_tells_after_the_transaction(monkeypatch, targets):
    from bluegreen.components.model.audit import Operator
    flip, transactions = fake_consul_for_flips(monkeypatch)
    before, after, notify = targets(status=503, body="frozen"), targets(), targets()
    entry = {"hooks": {"beforeFlip": before.url, "afterFlip": after.url}, "notify": notify.url}
    with pytest.raises(flip.FlipVetoed, match=r"\(answered 503: frozen\); traffic stays on blue; nothing was changed"):
        flip.flip_together([a_move(flip, **entry)], Operator("ana@ci", "c"), "r")
    assert transactions == [] and after.got == []
    assert before.got[0]["digest"] == "reg/vizconfig@sha256:" + "b" * 64 and before.got[0]["actor"] == "ana@ci"
    allowed = targets()
    entry["hooks"]["beforeFlip"] = allowed.url
    said = []
    flip.flip_together([a_move(flip, **entry)], Operator("ana@ci", "c"), "r", say=said.append)
    [(writes, _)] = transactions
    assert writes["bluegreen/aliases/integration/vizconfig"] == ("green", 7)
    assert allowed.got[0]["event"] == "flip" and after.got == [allowed.got[0]]
    assert notify.got[-1]["text"].startswith("bluegreen: flipped: vizconfig in integration: blue -> green (2.0.0)")
    assert said == ["hooks: beforeFlip answered 200: the flip may go"]


def test_a_flip_without_hooks_asks_nobody(monkeypatch):
    flip, transactions = fake_consul_for_flips(monkeypatch)
    monkeypatch.setattr(flip.hooks.requests, "post", lambda *_, **__: pytest.fail("asked or told someone"))
    flip.flip_together([a_move(flip)])
    assert len(transactions) == 1
