"""The preview-traffic gate: a stack entry's gate.previewTraffic, the decision (model.analysis) and
where the delivery commands ask it before a flip (delivery.preview_gate, delivery.flip)."""

from __future__ import annotations

import copy

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from bluegreen.components.model.analysis import FAIL, PASS, TOO_LITTLE, Bounds, Verdict, preview_refusal
from bluegreen.components.model.audit import Operator
from bluegreen.components.model.config import parse_stack_config
from bluegreen.components.model.hooks import ROLLBACK
from bluegreen.components.model.validation import ConfigError
from bluegreen.delivery import flip, preview_gate
from test_config import BASE, ROOT

PROMETHEUS = "http://127.0.0.1:9"


def settings(**entry):
    data = copy.deepcopy(BASE)
    data["services"]["vizconfig"].update(entry)
    config = parse_stack_config("integration", data, ROOT)
    return config, config.services[0]


# --- the stack entry ----------------------------------------------------------------------------

def test_no_gate_unless_asked_and_flaggers_defaults_when_asked():
    assert settings()[1].preview_gate is None
    assert settings(gate={"previewTraffic": {}})[1].preview_gate == Bounds(0.99, 0.5, 60, 20)
    asked = {"minSuccessRate": 0.95, "maxP99": "250ms", "window": "2m", "minRequests": 50}
    assert settings(gate={"previewTraffic": asked})[1].preview_gate == Bounds(0.95, 0.25, 120, 50)


@pytest.mark.parametrize("gate, field, advice", [
    ({}, "gate", "says nothing to check; write gate: {previewTraffic: {}}"),
    ({"previewTraffic": {"minSuccessRate": 1.5}}, "gate.previewTraffic.minSuccessRate", "from 0.5 to 1"),
    ({"previewTraffic": {"maxP99": "2h"}}, "gate.previewTraffic.maxP99", "is not a duration"),
    ({"previewTraffic": {"maxP99": "90s"}}, "gate.previewTraffic.maxP99", "1ms to 60s"),
    ({"previewTraffic": {"window": "5s"}}, "gate.previewTraffic.window", "10s to 60m"),
    ({"previewTraffic": {"minRequests": 0}}, "gate.previewTraffic.minRequests", "1..100000"),
    ({"previewTraffic": {"p99": "1s"}}, "gate.previewTraffic.p99", "allowed keys here are: minSuccessRate"),
    ({"stableTraffic": {}}, "gate.stableTraffic", "allowed keys here are: previewTraffic"),
])
def test_a_bad_gate_names_the_field_and_the_fix(gate, field, advice):
    with pytest.raises(ConfigError) as raised:
        settings(gate=gate)
    assert raised.value.field == f"bluegreen.services.vizconfig.{field}"
    assert advice in str(raised.value)


# --- the decision -------------------------------------------------------------------------------

def verdict(outcome: str, reason: str = "120 requests, success 80.00%, p99 12 ms") -> Verdict:
    return Verdict(outcome, 120.0, 0.8, 0.012, reason)


def test_a_pass_lets_the_flip_go_a_fail_or_too_little_says_why():
    assert preview_refusal("vizconfig", "green", verdict(PASS)) is None
    assert preview_refusal("vizconfig", "green", verdict(FAIL, "success rate 80.00% below 99.00%")) == \
        "vizconfig's preview traffic on green fails gate.previewTraffic: success rate 80.00% below 99.00%"
    refusal = preview_refusal("vizconfig", "green", verdict(TOO_LITTLE, "3 requests in 60s, fewer than the 20"))
    assert "too little to judge (3 requests in 60s" in refusal
    assert "send requests to its preview URI first, or lower gate.previewTraffic.minRequests" in refusal


@given(st.sampled_from([PASS, FAIL, TOO_LITTLE]), st.booleans())
def test_a_rollback_is_never_held_and_a_flip_goes_only_on_a_pass(outcome, rollback):
    refused = preview_refusal("s", "blue", verdict(outcome), rollback=rollback) is not None
    assert refused == (not rollback and outcome != PASS)


# --- delivery: Prometheus asked, and where a flip stops ------------------------------------------

class FakePrometheus:
    """Answers the two traffic queries with `counts` (status class -> requests) and a p99."""

    def __init__(self, counts: dict[str, float], p99_s: float = 0.01, down: bool = False):
        self.counts, self.p99_s, self.down, self.asked = counts, p99_s, down, []

    def get(self, url, params, timeout):
        self.asked.append((url, params["query"]))
        if self.down:
            raise requests.ConnectionError("connection refused")
        if params["query"].startswith("histogram_quantile"):
            result = [{"metric": {}, "value": [0, str(self.p99_s)]}]
        else:
            result = [{"metric": {"status": s}, "value": [0, str(n)]} for s, n in self.counts.items()]
        body = {"status": "success", "data": {"resultType": "vector", "result": result}}
        return type("Answer", (), {"json": lambda _self: body})()


@pytest.fixture
def prometheus(monkeypatch):
    def install(**kwargs):
        fake = FakePrometheus(**kwargs)
        monkeypatch.setattr(preview_gate.requests, "get", fake.get)
        monkeypatch.setattr(preview_gate, "platform_outputs", lambda _c: {"prometheus": PROMETHEUS})
        return fake
    return install


def test_the_gate_reads_the_target_colours_preview_traffic_over_its_window(prometheus):
    fake = prometheus(counts={"2xx": 118.0, "4xx": 2.0})
    config, service = settings(gate={"previewTraffic": {"window": "2m"}})
    assert preview_gate.check_preview(config, service, "green") == \
        (None, "vizconfig's preview traffic on green: 120 requests, success 100.00%, p99 10 ms")
    for url, query in fake.asked:
        assert url == f"{PROMETHEUS}/api/v1/query"
        assert 'service="vizconfig",colour="green",traffic="preview"' in query and "[120s]" in query


def test_nothing_is_asked_without_a_gate_or_for_a_rollback(prometheus):
    fake = prometheus(counts={"5xx": 100.0})
    config, service = settings()
    assert preview_gate.check_preview(config, service, "green") == (None, "")
    config, service = settings(gate={"previewTraffic": {}})
    assert preview_gate.check_preview(config, service, "green", rollback=True) == (None, "")
    assert fake.asked == []


def test_no_prometheus_or_no_answer_holds_the_flip_saying_so(prometheus, monkeypatch):
    prometheus(counts={}, down=True)
    config, service = settings(gate={"previewTraffic": {}})
    refusal, _ = preview_gate.check_preview(config, service, "green")
    assert refusal.startswith(f"Prometheus at {PROMETHEUS} gave no verdict on vizconfig's preview traffic")
    monkeypatch.setattr(preview_gate, "platform_outputs", lambda _c: {"registry": "r"})
    refusal, _ = preview_gate.check_preview(config, service, "green")
    assert "the platform runs no Prometheus" in refusal and "remove gate" in refusal


def fake_consul(monkeypatch) -> list:
    transactions = []
    monkeypatch.setattr(flip, "check_colour", lambda move: 0.0)
    monkeypatch.setattr(flip.consul_api, "kv_get_indexed", lambda *_: ("blue", 7))
    monkeypatch.setattr(flip.consul_api, "kv_get", lambda *_: None)
    monkeypatch.setattr(flip.consul_api, "kv_keys", lambda *_: [])
    monkeypatch.setattr(flip.consul_api, "kv_cas_many",
                        lambda _c, writes, _t, sets=None: transactions.append(writes) or True)
    return transactions


def a_move(**entry) -> flip.Move:
    config, service = settings(**entry)
    return flip.Move(config, service, colour="green", expected="blue", token="t", release="2.0.0")


def test_a_flip_whose_preview_fails_writes_nothing_and_a_rollback_goes(monkeypatch, prometheus):
    transactions = fake_consul(monkeypatch)
    prometheus(counts={"2xx": 80.0, "5xx": 20.0})
    move = a_move(gate={"previewTraffic": {}})
    with pytest.raises(flip.FlipRefused, match=r"fails gate.previewTraffic: success rate 80.00% below "
                                               r"99.00% .*; nothing was changed$"):
        flip.flip_together([move], Operator("ana@ci", "c"), "r")
    assert transactions == []
    flip.flip_together([move], Operator("ana@ci", "c"), "r", event=ROLLBACK)
    assert transactions[0]["bluegreen/aliases/integration/vizconfig"] == ("green", 7)


def test_a_flip_whose_preview_passes_goes_and_says_what_was_judged(monkeypatch, prometheus):
    transactions = fake_consul(monkeypatch)
    prometheus(counts={"2xx": 50.0})
    said = []
    flip.flip_together([a_move(gate={"previewTraffic": {}})], say=said.append)
    assert len(transactions) == 1
    assert said == ["vizconfig's preview traffic on green: 50 requests, success 100.00%, p99 10 ms"]


def test_the_pipeline_refuses_its_flip_before_touching_the_stack_file(monkeypatch, prometheus):
    from types import SimpleNamespace

    from bluegreen.delivery.pipeline import Pipeline
    from bluegreen.delivery.steps import StepFailed
    prometheus(counts={"2xx": 3.0})
    config, service = settings(gate={"previewTraffic": {}})
    changed, recorded, said = [], [], []
    stack = SimpleNamespace(name="integration", config=lambda: config, service=lambda _n: service,
                            set_service=lambda *a: changed.append(a), up=lambda *_: pytest.fail("up"))
    trail = SimpleNamespace(record=lambda *a, **k: recorded.append((a, k)))
    pipeline = SimpleNamespace(service="vizconfig", version="2.0.0", _say=said.append,
                               _trail=lambda _s: trail)
    with pytest.raises(StepFailed, match=r"too little to judge .*; the alias stays on blue$"):
        Pipeline._flip(pipeline, stack, "green", "blue")
    assert changed == [] and recorded[0][0] == ("failed", "vizconfig")
    assert said == ["vizconfig's preview traffic on green: 3 requests in 60s, fewer than the 20 a "
                    "verdict needs"]
