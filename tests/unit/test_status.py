"""`./bg status`: what it makes of Consul's records (the command reads them with the deployer's token)."""

from __future__ import annotations

import json

from components.consul.records import ServiceRecords
from components.model.split import Cohort, Split, split_value
from delivery.status import status_lines, status_of


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
        "  last flip: blue -> green 2.0.0: rolling, step 2 of 2 (50%)"]


def test_a_split_naming_the_live_colour_sends_nothing_away():
    status = status_of("vizconfig", records(split=split_value(Split(20), "green")))
    assert (status["split"]["colour"], status["split"]["percent"]) == (None, 0)
    assert status_of("vizconfig", ServiceRecords())["live"] is None
