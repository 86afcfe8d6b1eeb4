"""`./bg status`: what it makes of Consul's records (the command reads them with the deployer's token)."""

from __future__ import annotations

import datetime
import json
import math

from bluegreen.components.consul.records import ServiceRecords
from bluegreen.components.model.split import Cohort, Split, split_value
from bluegreen.delivery.status import read_traffic, sparkline, status_lines, status_of


def records(**fields) -> ServiceRecords:
    return ServiceRecords(running={"blue": "1.0.0", "green": "2.0.0"}, live="blue", **fields)


def test_a_service_with_a_split_and_a_rolling_flip():
    rolling = {"status": "rolling", "colour": "green", "previous": "blue", "version": "2.0.0",
               "steps": [10, 50], "step": 1, "stepSince": "2026-12-01T12:00:00Z"}
    split = split_value(Split(50, None, (Cohort("header", "X-Beta", "1", "green"),)), "blue")
    status = status_of("vizconfig", records(split=split, bake=json.dumps(rolling)))
    assert status["split"]["colour"] == "green" and status["split"]["percent"] == 50
    assert status_lines(status) == [
        "vizconfig: live blue",
        "  blue  1.0.0  (live)",
        "  green 2.0.0  (offline)",
        "  split: 50% to green (sticky by cookie); header X-Beta=1 -> green",
        "  last flip: blue -> green 2.0.0: rolling, step 2 of 2 (50%)",
        "  delivery: 0 deployments/day, lead time -, change failure rate -, time to restore - "
        "(last 7 days: 0 deployments, 0 failed)"]


def test_a_split_naming_the_live_colour_sends_nothing_away():
    status = status_of("vizconfig", records(split=split_value(Split(20), "green")))
    assert (status["split"]["colour"], status["split"]["percent"]) == (None, 0)
    assert status_of("vizconfig", ServiceRecords())["live"] is None


NOW = datetime.datetime(2026, 12, 7, 12, 0, tzinfo=datetime.timezone.utc)


def test_the_delivery_metrics_and_each_colours_traffic_as_sparklines():
    history = {"1.0.0": {"liveAt": "2026-12-06T12:00:00Z", "committedAt": "2026-12-06T11:00:00Z"},
               "2.0.0": {"liveAt": "2026-12-07T11:00:00Z", "rolledBackAt": "2026-12-07T11:01:00Z",
                         "committedAt": "2026-12-07T10:50:00Z"}}
    traffic = {"blue": {"requests": [0.0, 10.0, 20.0, math.nan], "errors": [0.0, 0.0, 0.5, math.nan]}}
    status = status_of("vizconfig", records(history=history), NOW, traffic)
    assert status["delivery"]["changeFailureRate"] == 0.5
    assert status_lines(status)[-3:] == [
        "  delivery: 0.286 deployments/day, lead time 35 min, change failure rate 50%, time to restore "
        "1 min (last 7 days: 2 deployments, 1 failed)",
        "  traffic, last hour (2 min a bar): requests/s | 5xx share",
        "    blue  ▁▅█  now 20.0/s | ▁▁▅  max 50%"]
    assert status_lines(status_of("vizconfig", records(), NOW, {"unavailable": "no Prometheus"}))[-1] == \
        "  traffic: no Prometheus"


def test_a_sparkline_scales_to_its_top_and_leaves_gaps():
    assert sparkline([0, 1, 2, 4]) == "▁▃▅█"
    assert sparkline([0.0, math.nan, 0.5], 1) == "▁ ▅"
    assert sparkline([]) == ""


def test_traffic_without_prometheus_says_so():
    assert read_traffic(None, "prod", "api", NOW) == {"unavailable": "the platform runs no Prometheus"}


def test_the_chart_queries_give_a_colour_without_5xx_a_share_of_zero():
    from bluegreen.components.model.analysis import chart_queries, range_series
    requests, errors = chart_queries("prod", "api")
    assert requests == 'sum by (colour) (rate(bluegreen_requests_total{environment="prod",service="api",' \
                       'traffic="stable"}[1m]))'
    assert errors == (f'(sum by (colour) (rate(bluegreen_requests_total{{environment="prod",service="api",'
                      f'traffic="stable",status="5xx"}}[1m])) or {requests} * 0) / {requests}')
    body = {"status": "success", "data": {"resultType": "matrix", "result": [
        {"metric": {"colour": "blue"}, "values": [[1000, "2.5"], [1015, "NaN"]]}]}}
    series = range_series(body)
    assert series["blue"][0] == (1000.0, 2.5) and math.isnan(series["blue"][1][1])
