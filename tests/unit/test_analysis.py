"""The traffic analysis a bake can judge by: success rate and p99 over a window, from Prometheus's
HTTP API answers; "too little traffic" below the minimum count; property-based over the counts."""

import math

import pytest
from hypothesis import given, strategies as st

from bluegreen.components.model.analysis import FAIL, PASS, TOO_LITTLE, Bounds, analyse, traffic_queries

BOUNDS = Bounds()   # 99%, 500 ms, 60 s, 20 requests


def vector(*series):
    return {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": metric, "value": [1700000000.0, str(value)]} for metric, value in series]}}


def statuses(**counts):
    return vector(*(({"status": status}, value) for status, value in counts.items()))


def p99(seconds):
    return vector(({}, seconds)) if seconds is not None else vector()


def test_a_healthy_colour_passes():
    verdict = analyse(statuses(**{"2xx": 118.0, "4xx": 2.0}), p99(0.012), BOUNDS)
    assert verdict.outcome == PASS and verdict.requests == 120
    assert verdict.success_rate == 1.0 and verdict.p99_s == 0.012
    assert verdict.reason == "120 requests, success 100.00%, p99 12 ms"


def test_client_errors_are_not_failures_but_server_errors_are():
    verdict = analyse(statuses(**{"2xx": 80.0, "4xx": 0.0, "5xx": 20.0}), p99(0.01), BOUNDS)
    assert verdict.outcome == FAIL and verdict.success_rate == 0.8
    assert verdict.reason.startswith("success rate 80.00% below 99.00% (100 requests")


def test_a_slow_colour_fails_on_its_p99():
    verdict = analyse(statuses(**{"2xx": 100.0}), p99(0.75), BOUNDS)
    assert verdict.outcome == FAIL
    assert verdict.reason.startswith("p99 750 ms above 500 ms")


def test_both_breaches_are_named():
    verdict = analyse(statuses(**{"2xx": 50.0, "5xx": 50.0}), p99(2.0), BOUNDS)
    assert "success rate 50.00% below" in verdict.reason and "p99 2000 ms above" in verdict.reason


@pytest.mark.parametrize("answer", [statuses(), statuses(**{"2xx": 19.0}),
                                    statuses(**{"5xx": 19.9})])
def test_too_little_traffic_gives_no_verdict(answer):
    verdict = analyse(answer, p99(9.0), BOUNDS)
    assert verdict.outcome == TOO_LITTLE and verdict.p99_s is None
    assert "fewer than the 20 a verdict needs" in verdict.reason


def test_an_unknown_p99_judges_by_the_success_rate_alone():
    # histogram_quantile answers NaN when the window has no bucket increase.
    verdict = analyse(statuses(**{"2xx": 40.0}), p99(math.nan), BOUNDS)
    assert verdict.outcome == PASS and verdict.p99_s is None and verdict.reason.endswith("unknown")


def test_an_error_answer_says_what_prometheus_said():
    with pytest.raises(ValueError, match="Prometheus answered no result \\('parse error'\\)"):
        analyse({"status": "error", "error": "parse error"}, p99(0.1), BOUNDS)
    with pytest.raises(ValueError, match="expected an instant vector"):
        analyse({"status": "success", "data": {"resultType": "matrix", "result": []}}, p99(0.1), BOUNDS)


def test_the_queries_select_one_colour_and_kind_of_traffic_over_the_window():
    by_status, latency = traffic_queries("production", "vizconfig", "green", 60, "preview")
    labels = 'environment="production",service="vizconfig",colour="green",traffic="preview"'
    assert by_status == f"sum by (status) (increase(bluegreen_requests_total{{{labels}}}[60s]))"
    assert latency == ("histogram_quantile(0.99, sum by (le) (increase("
                       f"bluegreen_request_duration_seconds_bucket{{{labels}}}[60s])))")


@pytest.mark.parametrize("changes", [{"min_success_rate": 0}, {"min_success_rate": 1.5},
                                     {"max_p99_s": 0}, {"window_s": 5}, {"min_requests": 0}])
def test_bounds_refuse_what_cannot_be_judged(changes):
    with pytest.raises(ValueError):
        Bounds(**changes)


counts = st.floats(min_value=0, max_value=1e6, allow_nan=False)


@given(ok=counts, client=counts, server=counts, latency=st.floats(min_value=0, max_value=60))
def test_the_verdict_follows_the_bounds_for_any_counts(ok, client, server, latency):
    verdict = analyse(statuses(**{"2xx": ok, "4xx": client, "5xx": server}), p99(latency), BOUNDS)
    total = ok + client + server
    if total < BOUNDS.min_requests:
        assert verdict.outcome == TOO_LITTLE
        return
    rate = 1 - server / total
    assert 0 <= verdict.success_rate <= 1
    healthy = rate >= BOUNDS.min_success_rate and latency <= BOUNDS.max_p99_s
    assert verdict.outcome == (PASS if healthy else FAIL)
