"""The delivery metrics (model.scoreboard): deployments, lead time, change failure rate and time to
restore from a release history, for any history the platform can write."""

from __future__ import annotations

import datetime
import json
import os
import statistics
import subprocess

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bluegreen.components.model.release import history_entry, went_live
from bluegreen.components.model.scoreboard import (
    deployments, delivery_metrics, duration_words, exposition, summary
)
from bluegreen.components.naming import format_time

pytestmark = pytest.mark.unit

NOW = datetime.datetime(2026, 12, 7, 12, 0, tzinfo=datetime.timezone.utc)


def at(minutes: float) -> str:
    """A history time `minutes` before NOW."""
    return format_time(NOW - datetime.timedelta(minutes=minutes))


def test_the_four_keys_of_a_small_history():
    history = {
        # committed 10 min before going live, 3 days ago; then 2.0.0 replaced it
        "1.0.0": {"committedAt": at(3 * 1440 + 10), "firstLiveAt": at(3 * 1440), "liveAt": at(3 * 1440)},
        # live an hour ago, rolled back by the watchdog 90 s later
        "2.0.0": {"committedAt": at(65), "firstLiveAt": at(60), "liveAt": at(60),
                  "rolledBackAt": at(58.5)},
        # live 10 min ago, built from a commit made 30 min before
        "2.0.1": {"committedAt": at(40), "liveAt": at(10)},
        "3.0.0": {"deployedAt": at(5)},          # deployed to the offline colour, never live
    }
    figures = delivery_metrics(history, NOW)
    assert figures == {"deploymentsPerDay": round(3 / 7, 3), "leadTimeSeconds": 600.0,
                       "changeFailureRate": round(1 / 3, 3), "timeToRestoreSeconds": 90.0,
                       "deployments": 3, "failures": 1, "windowDays": 7}
    assert summary(figures) == ("0.429 deployments/day, lead time 10 min, change failure rate 33%, "
                                "time to restore 1 min 30 s (last 7 days: 3 deployments, 1 failed)")


def test_a_rollback_by_hand_is_a_failure_of_the_release_it_left_and_no_deployment():
    """2.0.0 went live, then `./bg rollback` put 1.0.0 live again (flip.went_live): 1.0.0 keeps
    its first time live, 2.0.0 failed, restored when 1.0.0 went live again."""
    one = history_entry(None, version="1.0.0", reference="r@1", colour="blue", live=True,
                        was_live=False, now=at(120), actor="a", committed_at=at(125))
    two = history_entry(None, version="2.0.0", reference="r@2", colour="green", live=True,
                        was_live=False, now=at(60), actor="a", committed_at=at(70))
    one = json.loads(went_live(json.dumps(one), NOW - datetime.timedelta(minutes=55)))
    assert one["firstLiveAt"] == at(120) and one["liveAt"] == at(55)
    history = {"1.0.0": one, "2.0.0": two}
    assert [d.release for d in deployments(history)] == ["1.0.0", "2.0.0"]
    figures = delivery_metrics(history, NOW)
    assert (figures["deployments"], figures["failures"], figures["timeToRestoreSeconds"]) == (2, 1, 300.0)
    assert figures["leadTimeSeconds"] == statistics.median([300.0, 600.0])


def test_a_return_after_the_next_deployment_fails_that_one_not_this_one():
    history = {"1.0.0": {"firstLiveAt": at(100), "liveAt": at(10)},   # back live 10 min ago
               "2.0.0": {"liveAt": at(80)},                           # replaced by 3.0.0
               "3.0.0": {"liveAt": at(50)}}                           # left for 1.0.0
    restored = {d.release: d.restored_at for d in deployments(history)}
    assert restored["2.0.0"] is None and restored["3.0.0"] == NOW - datetime.timedelta(minutes=10)


def test_nothing_measured_is_none_not_zero():
    assert delivery_metrics({}, NOW) == {
        "deploymentsPerDay": 0.0, "leadTimeSeconds": None, "changeFailureRate": None,
        "timeToRestoreSeconds": None, "deployments": 0, "failures": 0, "windowDays": 7}
    # A deployment without a commit time has no lead time; unreadable times are no times.
    figures = delivery_metrics({"1.0.0": {"liveAt": at(1), "committedAt": "yesterday"},
                                "x": "not an entry"}, NOW)
    assert figures["deployments"] == 1 and figures["leadTimeSeconds"] is None
    with pytest.raises(ValueError, match="a day at least"):
        delivery_metrics({}, NOW, window_days=0)


def test_the_exposition_leaves_out_what_was_not_measured():
    text = exposition({("prod", "api"): delivery_metrics({"1.0.0": {"liveAt": at(1)}}, NOW)})
    assert 'bluegreen_deployments_per_day{environment="prod",service="api"} 0.143' in text
    assert 'bluegreen_change_failure_rate{environment="prod",service="api"} 0' in text
    assert "bluegreen_lead_time_seconds{" not in text and "# TYPE bluegreen_lead_time_seconds gauge" in text


@pytest.mark.parametrize("seconds, words", [(None, "-"), (42.4, "42 s"), (200, "3 min 20 s"),
                                            (3600, "1 h"), (5 * 3600 + 120, "5 h 2 min"),
                                            (2 * 86400 + 3 * 3600, "2 d 3 h"), (-90, "-1 min 30 s")])
def test_durations_read_as_people_say_them(seconds, words):
    assert duration_words(seconds) == words


# -- for any history ---------------------------------------------------------------------------

minutes = st.integers(min_value=0, max_value=14 * 1440)


@st.composite
def entries(draw):
    """A history entry as the platform writes it: maybe never live; first live no later than its
    latest liveAt; committed before it went live; maybe rolled back after it went live."""
    if draw(st.booleans()):
        return {"deployedAt": at(draw(minutes))}
    first = draw(minutes)
    entry = {"liveAt": at(first - draw(st.integers(0, first))), "firstLiveAt": at(first)}
    if draw(st.booleans()):
        entry["committedAt"] = at(first + draw(st.integers(0, 600)))
    if draw(st.booleans()):
        entry["rolledBackAt"] = at(first - draw(st.integers(0, first)))
    return entry


histories = st.dictionaries(st.text("0123456789.", min_size=1, max_size=6), entries(), max_size=12)


@given(histories, st.integers(1, 30))
def test_the_figures_hold_their_definitions_for_any_history(history, window):
    figures = delivery_metrics(history, NOW, window)
    recent = [d for d in deployments(history)
              if NOW - datetime.timedelta(days=window) < d.live_at <= NOW]
    assert figures["deployments"] == len(recent)
    assert figures["deploymentsPerDay"] == round(len(recent) / window, 3)
    assert 0 <= figures["failures"] <= figures["deployments"]
    rate = figures["changeFailureRate"]
    assert (rate is None) == (not recent) and (rate is None or 0 <= rate <= 1)
    assert figures["leadTimeSeconds"] is None or figures["leadTimeSeconds"] >= 0
    restore = figures["timeToRestoreSeconds"]
    assert (restore is None) == (figures["failures"] == 0) and (restore is None or restore >= 0)


@given(histories)
def test_release_names_do_not_matter(history):
    renamed = {f"r{i}-{name}": entry for i, (name, entry) in enumerate(reversed(history.items()))}
    assert delivery_metrics(renamed, NOW) == delivery_metrics(history, NOW)


@given(histories, st.data())
def test_a_roll_back_never_lowers_the_failure_rate(history, data):
    live = [name for name, entry in history.items() if "firstLiveAt" in entry]
    if not live:
        return
    name = data.draw(st.sampled_from(live))
    rolled = {**history, name: {**history[name], "rolledBackAt": history[name]["firstLiveAt"]}}
    before, after = delivery_metrics(history, NOW), delivery_metrics(rolled, NOW)
    assert (after["changeFailureRate"] or 0) >= (before["changeFailureRate"] or 0)
    assert after["deployments"] == before["deployments"]


@given(histories)
def test_a_rollback_to_a_release_is_no_new_deployment(history):
    """went_live (a flip to a release that was live before) keeps the count of deployments."""
    live = sorted((name for name, entry in history.items() if "firstLiveAt" in entry))
    if not live:
        return
    back = json.loads(went_live(json.dumps(history[live[0]]), NOW))
    again = {**history, live[0]: back}
    assert [d.release for d in deployments(again)] == [d.release for d in deployments(history)]


def test_a_release_records_the_time_of_its_build_contexts_commit_unless_it_holds_changes(tmp_path):
    from bluegreen.components.stack_inputs import commit_time
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@localhost"]
    assert commit_time(str(tmp_path)) is None                        # not in git
    subprocess.run([*git, "init", "-q"], check=True)
    (tmp_path / "app.py").write_text("print(1)\n")
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "one"], check=True,
                   env={**os.environ, "GIT_COMMITTER_DATE": "2026-12-01T10:00:00Z"})
    assert commit_time(str(tmp_path)) == "2026-12-01T10:00:00Z"
    (tmp_path / "app.py").write_text("print(2)\n")                    # a tracked file changed
    assert commit_time(str(tmp_path)) is None
