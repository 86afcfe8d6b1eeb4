"""Splits and cohorts (model.split): what a stack entry may ask, the record the proxy renders, and
the rule that a colour a split or cohort sends clients to is as untouchable as the alias's."""

from __future__ import annotations

import dataclasses
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bluegreen.components.model.config import ServiceConfig
from bluegreen.components.model.split import (
    Cohort, Split, checked_percent, parse_record, parse_split, serving_colours, share, split_value
)
from bluegreen.components.model.validation import ConfigError, Fields
from bluegreen.components.naming import COLOURS, offline_colour
from test_live import consul_after, deploy, refused
from test_wiring import ENV, config
from unit_harness import plain

SOURCE = "stacks/Pulumi.local.yaml"
BOTH = {"blue": object(), "green": object()}


def parsed(split, colours=BOTH) -> Split:
    return parse_split(Fields(SOURCE, "bluegreen.services.vizconfig", {"split": split}, ["split"]),
                       colours)


def test_a_split_with_a_sticky_header_and_cohorts():
    split = parsed({"percent": 20, "sticky": {"header": "X-User-Id"},
                    "cohorts": [{"header": "X-Beta", "value": "1", "colour": "green"},
                                {"cookie": "beta", "value": "yes", "colour": "blue"}]})
    assert split.percent == 20 and split.sticky_header == "X-User-Id"
    assert [c.variable for c in split.cohorts] == ["http_x_beta", "cookie_beta"]


@pytest.mark.parametrize("split,field,words", [
    ({"percent": 100}, "split.percent", "100 is a flip"),
    ({"percent": 101}, "split.percent", "out of range"),
    ({"percent": "half"}, "split.percent", "must be an integer"),
    ({"sticky": "ip"}, "split.sticky", "write cookie"),
    ({"sticky": {"header": "X Bad"}}, "split.sticky.header", "not allowed"),
    ({"steps": [5]}, "split.steps", "unknown key"),
    ({"cohorts": {"header": "X-Beta"}}, "split.cohorts", "must be a list"),
    ({"cohorts": [{"header": "X-Beta", "value": "1", "colour": "red"}]}, "split.cohorts[0].colour",
     "use one of: blue, green"),
    ({"cohorts": [{"header": "X-Beta", "cookie": "b", "value": "1", "colour": "blue"}]},
     "split.cohorts[0].header", "exactly one of header or cookie"),
    ({"cohorts": [{"header": "X-Beta", "value": "1; return 200", "colour": "blue"}]},
     "split.cohorts[0].value", "not allowed"),
    ({"cohorts": [{"header": "X-Bluegreen-Colour", "value": "1", "colour": "blue"}]},
     "split.cohorts[0].header", "the proxy's own header"),
    ({"cohorts": [{"cookie": "b-c", "value": "1", "colour": "blue"}]}, "split.cohorts[0].cookie",
     "not allowed"),
])
def test_bad_splits_are_refused_naming_the_file_and_field(split, field, words):
    with pytest.raises(ConfigError) as error:
        parsed(split)
    assert error.value.source == SOURCE
    assert error.value.field == f"bluegreen.services.vizconfig.{field}"
    assert words in error.value.problem


def test_a_cohort_naming_a_colour_without_a_version_is_refused():
    with pytest.raises(ConfigError, match=r"cohorts\[0\]\.colour: green has no version configured"):
        parsed({"cohorts": [{"header": "X-Beta", "value": "1", "colour": "green"}]}, {"blue": 1})


def test_percent_arguments():
    assert [checked_percent(t) for t in ("0", "5", "100")] == [0, 5, 100]
    for text in ("-1", "101", "5.5", "five", ""):
        with pytest.raises(ValueError, match="not a percentage"):
            checked_percent(text)


names = st.from_regex(r"[A-Za-z][A-Za-z0-9]{0,8}", fullmatch=True)
cohorts = st.builds(Cohort, st.sampled_from(["header", "cookie"]), names,
                    st.from_regex(r"[A-Za-z0-9._-]{1,8}", fullmatch=True), st.sampled_from(COLOURS))
splits = st.builds(Split, st.integers(0, 99), st.none() | names,
                   st.lists(cohorts, max_size=3).map(tuple))


@given(splits, st.sampled_from(COLOURS))
def test_the_record_keeps_the_split_and_sends_its_share_offline(split, live):
    colour, back = parse_record(split_value(split, live))
    assert back == split and colour == offline_colour(live)
    assert share(split_value(split, live), live) == ((offline_colour(live), split.percent)
                                                      if split.percent else (None, 0))


@given(splits, st.sampled_from(COLOURS))
def test_once_the_alias_names_the_split_colour_nothing_is_sent_away(split, live):
    # A flip to the colour a split sent traffic to leaves no share of it going back.
    assert share(split_value(split, live), offline_colour(live)) == (None, 0)


@given(splits, st.sampled_from(COLOURS))
def test_the_serving_colours_are_those_the_split_and_cohorts_send_clients_to(split, live):
    serving = serving_colours(split_value(split, live), live)
    expected = ({offline_colour(live)} if split.percent else set()) | \
        {c.colour for c in split.cohorts if c.colour != live}
    assert set(serving) == expected and live not in serving


def test_a_record_this_version_did_not_write_is_an_error_that_says_what_to_do():
    with pytest.raises(ConfigError, match="set it again with ./bg split"):
        parse_record('{"percent": 20}')
    assert parse_record(None)[0] is None and share(None, "blue") == (None, 0)


# -- the program: the split record, and the rule on the colour it sends clients to

SPLIT_KEY = f"bluegreen/splits/{ENV}/vizconfig"


def split_of(deployment) -> dict:
    return json.loads(plain(deployment.key(SPLIT_KEY).inputs["value"]))


def test_every_service_has_a_split_record_and_a_stack_entry_sets_it():
    assert split_of(deploy(config(live="green")))["percent"] == 0
    record = split_of(deploy(config(live="green", split={"percent": 10})))
    assert record["percent"] == 10 and record["colour"] == "blue"


def test_a_version_change_on_the_colour_a_split_sends_clients_to_is_refused():
    serving = consul_after(deploy(config(live="green")), "green")
    serving = dataclasses.replace(serving, split=split_value(Split(percent=20), "green"))
    message = str(refused(config(live="green", blue="1.1.0"), serving))
    assert "bluegreen.services.vizconfig.blue: blue would go from 1.0.0 to 1.1.0" in message
    assert f"{SPLIT_KEY} says the split sends it 20% of the stable traffic" in message
    assert "--percent 0" in message


def test_a_cohort_colour_is_serving_too():
    serving = consul_after(deploy(config(live="green")), "green")
    cohort = Split(cohorts=(Cohort("header", "X-Beta", "1", "blue"),))
    serving = dataclasses.replace(serving, split=split_value(cohort, "green"))
    assert "the cohort X-Beta=1 goes to it" in str(refused(config(live="green", blue="1.1.0"), serving))


def test_a_flip_with_a_share_left_in_the_stack_file_is_refused():
    serving = consul_after(deploy(config(live="green")), "green")
    message = str(refused(config(live="blue", split={"percent": 10}), serving))
    assert "split.percent: this update flips vizconfig to blue, and a flip ends the split" in message


def test_a_split_record_changed_outside_the_program_is_written_back():
    serving = consul_after(deploy(config(live="green")), "green")
    drifted = dataclasses.replace(serving, split=split_value(Split(percent=30), "green"))
    key = deploy(config(live="green"), drifted).key(SPLIT_KEY)
    assert key.inputs["observed"] != plain(key.inputs["value"])


def test_service_config_has_no_split_by_default():
    assert ServiceConfig.__dataclass_fields__["split"].default == Split()
