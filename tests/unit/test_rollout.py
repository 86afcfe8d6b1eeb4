"""Progressive rollouts (model.rollout): the stack entry's `rollout:`, the record a flip through one
writes instead of moving the alias, and the watchdog's decision at each look, as a rule over
any sequence of verdicts."""

from __future__ import annotations

import dataclasses
import datetime
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bluegreen.components import naming
from bluegreen.components.model import rollout
from bluegreen.components.model.bake import rollout_start
from bluegreen.components.model.config import Rollout
from bluegreen.components.model.validation import ConfigError
from test_bake import stack
from test_live import consul_after, deploy, refused
from test_wiring import ENV, config
from unit_harness import plain

NOW = datetime.datetime(2026, 12, 1, 12, 0, 0, tzinfo=datetime.timezone.utc)
BAKE = f"bluegreen/bake/{ENV}/vizconfig"
ALIAS = f"bluegreen/aliases/{ENV}/vizconfig"


@pytest.mark.parametrize("value,field,words", [
    ({"steps": [50, 25]}, "rollout.steps", "does not increase"),
    ({"steps": []}, "rollout.steps", "increasing percentages from 1 to 99"),
    ({"steps": [5, 100]}, "rollout.steps", "not allowed"),
    ({"steps": [5], "stepTime": "5s"}, "rollout.stepTime", "10s to 60m"),
    ({"steps": [5], "every": "1m"}, "rollout.every", "unknown key"),
])
def test_bad_rollouts_are_refused_naming_the_field(value, field, words):
    with pytest.raises(ConfigError) as error:
        stack(rollout=value)
    assert error.value.field == f"bluegreen.services.vizconfig.{field}" and words in str(error.value)


def test_a_rollout_parses():
    assert stack(rollout={"steps": [5, 25, 50], "stepTime": "30s"}).rollout == Rollout((5, 25, 50), 30.0)
    assert stack().rollout is None


def test_the_records_times_are_written_as_naming_writes_them():
    assert rollout.TIME_FORMAT == naming.TIME_FORMAT
    assert rollout.stamp(NOW) == naming.format_time(NOW)


def record(steps=(10, 50), step=0, step_s=30.0, bake_s=0.0) -> dict:
    settings = dataclasses.replace(stack(bakeTime="1m" if bake_s else "0s"), live="green",
                                   rollout=Rollout(tuple(steps), step_s), bake_s=bake_s)
    settings = dataclasses.replace(settings, colours={**settings.colours,
                                                      "green": settings.colours["blue"]})
    return rollout.started(json.loads(rollout_start(settings, "blue", "1.0.0", NOW)), NOW, step)


def test_a_failing_verdict_aborts_at_once_and_a_passing_one_waits_for_the_step_time():
    assert rollout.decide(record(), "fail", "success 80%", 1)[0] == rollout.ABORT
    assert rollout.decide(record(), "pass", "ok", 29)[0] == rollout.HOLD
    assert rollout.decide(record(), "pass", "ok", 30)[0] == rollout.ADVANCE
    assert rollout.decide(record(step=1), "pass", "ok", 30)[0] == rollout.FLIP


def test_without_a_verdict_it_holds_then_gives_up_after_three_step_times():
    assert rollout.decide(record(), None, "", 89)[0] == rollout.HOLD
    action, why = rollout.decide(record(), "too little traffic", "3 requests", 90)
    assert action == rollout.ABORT and "no verdict after 90s" in why


def test_the_flipped_record_bakes_for_the_bake_time_or_ends_baked():
    assert rollout.flipped(record(), NOW)["status"] == "baked"
    baking = rollout.flipped(record(bake_s=60.0), NOW)
    assert baking["status"] == "baking" and baking["until"] == naming.format_time(
        NOW + datetime.timedelta(seconds=60))


verdicts = st.lists(st.tuples(st.sampled_from(["pass", "fail", None]), st.floats(0, 200)),
                    max_size=40)


@given(st.lists(st.integers(1, 99), min_size=1, max_size=5, unique=True).map(sorted), verdicts)
def test_steps_only_go_up_and_the_alias_moves_only_after_every_step_passed(steps, looks):
    current, passed = record(steps=steps), set()
    for outcome, elapsed in looks:
        action, _ = rollout.decide(current, outcome, "", elapsed)
        if action == rollout.ABORT:
            assert outcome == "fail" or elapsed >= rollout.PATIENCE * current["stepS"]
            return
        if action in (rollout.ADVANCE, rollout.FLIP):
            assert outcome == "pass" and elapsed >= current["stepS"]
            passed.add(current["step"])
        if action == rollout.FLIP:
            assert passed == set(range(len(steps)))
            return
        if action == rollout.ADVANCE:
            before = rollout.percent(current)
            current = rollout.started(current, NOW, current["step"] + 1)
            assert rollout.percent(current) > before


# -- the program: a flip with a rollout writes the record, the alias stays

def test_a_flip_with_a_rollout_leaves_the_alias_and_writes_a_rolling_record():
    serving = consul_after(deploy(config(live="blue")), "blue")
    deployment = deploy(config(live="green", rollout={"steps": [10, 50], "stepTime": "30s"}), serving)
    assert plain(deployment.key(ALIAS).inputs["value"]) == "blue"
    written = json.loads(plain(deployment.key(BAKE).inputs["value"]))
    assert (written["status"], written["colour"], written["previous"], written["steps"]) == \
        ("rolling", "green", "blue", [10, 50])
    assert "observed" not in deployment.key(f"bluegreen/splits/{ENV}/vizconfig").inputs


def test_an_update_during_the_rollout_keeps_it_and_calling_it_off_supersedes_it():
    serving = consul_after(deploy(config(live="blue")), "blue")
    cfg = config(live="green", rollout={"steps": [10, 50], "stepTime": "30s"})
    started = json.loads(plain(deploy(cfg, serving).key(BAKE).inputs["value"]))
    rolling = dataclasses.replace(serving, bake=json.dumps(rollout.started(started, NOW)))
    again = deploy(cfg, rolling).key(BAKE)
    assert plain(again.inputs["value"]) == rolling.bake      # kept as the watchdog writes it
    off = json.loads(plain(deploy(config(live="blue"), rolling).key(BAKE).inputs["value"]))
    assert off["status"] == "superseded" and "called off" in off["reason"]


def test_an_aborted_rollout_is_not_started_again_behind_anyones_back():
    serving = consul_after(deploy(config(live="blue")), "blue")
    cfg = config(live="green", rollout={"steps": [10, 50], "stepTime": "30s"})
    started = json.loads(plain(deploy(cfg, serving).key(BAKE).inputs["value"]))
    aborted = naming.bake_outcome(started, "aborted", NOW, "step 1 of 2 (10%): success 80%")
    message = str(refused(cfg, dataclasses.replace(serving, bake=json.dumps(aborted))))
    assert "had its rollout aborted, on blue by the bake watchdog" in message
    assert "step 1 of 2 (10%): success 80%" in message
