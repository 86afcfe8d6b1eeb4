import json

from bluegreen.policies.rules.live import check_live_untouched
from policy_fakes import consul_key


def slot(value: dict):
    return consul_key("production-vizconfig-blue-slot", "bluegreen/slots/production/vizconfig/blue",
                      json.dumps(value))


def test_replacing_the_live_colour_without_acknowledgement_fails_with_the_reason():
    [message] = check_live_untouched(slot({"version": "2", "reference": "r", "shape": "s",
                                           "replacedLive": "the live colour blue goes from 1 to 2"}), {})
    assert message.startswith("production/vizconfig: this update replaces the containers serving "
                              "traffic: the live colour blue goes from 1 to 2")


def test_an_ordinary_slot_record_passes():
    assert check_live_untouched(slot({"version": "2", "reference": "r", "shape": "s"}), {}) == []
    assert check_live_untouched(consul_key("x-alias-key", "bluegreen/aliases/p/x", "blue"), {}) == []


def test_an_acknowledged_replacement_of_the_live_colour_passes():
    assert check_live_untouched(slot({"version": "2", "reference": "r", "shape": "s",
                                      "replacedLive": "blue would go from 1 to 2",
                                      "acknowledgedBy": "blue@1a2b3c4d"}), {}) == []


def test_the_rule_is_mandatory():
    from pulumi_policy import EnforcementLevel
    from bluegreen.policies.rules.live import POLICIES
    assert [p.enforcement_level for p in POLICIES] == [EnforcementLevel.MANDATORY]
