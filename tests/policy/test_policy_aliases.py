import pytest

from bluegreen.policies.rules.aliases import check_alias_gated, check_colour_values
from policy_fakes import (UNKNOWN, consul_key, find, gate, labels, production_service,
                          registration, registration_payload, run_resource_policy,
                          run_stack_policy, service_container)


# --- colour-values -----------------------------------------------------------------------------
@pytest.mark.parametrize("colour", ["blue", "green"])
def test_blue_and_green_pass_everywhere(colour):
    assert check_colour_values(service_container(colour=colour), {}) == []
    assert check_colour_values(gate(colour=colour), {}) == []
    assert check_colour_values(registration(colour=colour), {}) == []
    alias = consul_key("a-alias-key", "bluegreen/aliases/production/x", colour)
    assert check_colour_values(alias, {}) == []


def test_other_colours_fail():
    box = service_container(labels=labels(role="service", colour="red"))
    [message] = run_resource_policy("colour-values", box)
    assert "bluegreen.colour='red'" in message and "blue or green" in message
    assert run_resource_policy("colour-values", gate(colour="purple")) != []
    assert run_resource_policy("colour-values", registration(colour="teal")) != []
    [message] = run_resource_policy(
        "colour-values", consul_key("a-alias-key", "bluegreen/aliases/production/x", "Blue"))
    assert "would point at 'Blue'" in message and "live:" in message


def test_colour_rule_ignores_unknowns_and_other_keys():
    assert run_resource_policy("colour-values", consul_key(
        "a-alias-key", "bluegreen/aliases/production/x", UNKNOWN)) == []
    assert run_resource_policy("colour-values", consul_key(
        "a-route", "bluegreen/routes/production/x", "x")) == []
    assert run_resource_policy("colour-values", registration(payload=UNKNOWN)) == []


# --- alias-depends-on-gate -----------------------------------------------------------------------
def _alias(resources):
    return find(resources, "production-vizconfig-alias-key")


def test_alias_depending_on_its_gate_passes():
    resources = production_service()
    assert check_alias_gated(resources, {}) == []
    assert run_stack_policy("alias-depends-on-gate", resources) == []


def test_dependency_through_the_value_alone_is_enough():
    resources = production_service()
    _alias(resources)["dependencies"] = []
    assert run_stack_policy("alias-depends-on-gate", resources) == []


def test_alias_without_gate_fails():
    resources = production_service()
    alias = _alias(resources)
    alias["dependencies"], alias["property_dependencies"] = [], {}
    [(urn, message)] = run_stack_policy("alias-depends-on-gate", resources)
    assert urn == alias["urn"]
    assert "without depending on a health gate" in message and "components/consul/alias.py" in message


def test_alias_depending_on_the_other_colour_fails():
    resources = production_service(live="blue")
    green = find(resources, "production-vizconfig-green-gate")
    alias = _alias(resources)
    alias["dependencies"] = [green["urn"]]
    alias["property_dependencies"] = {"value": [green["urn"]]}
    [(_, message)] = run_stack_policy("alias-depends-on-gate", resources)
    assert "production/vizconfig/green" in message and "production/vizconfig/blue" in message


def test_alias_depending_on_another_environment_fails():
    resources = production_service()
    staging = gate("staging-vizconfig-blue-gate", environment="staging")
    resources.append(staging)
    alias = _alias(resources)
    alias["dependencies"] = [staging["urn"]]
    alias["property_dependencies"] = {"value": [staging["urn"]]}
    assert len(run_stack_policy("alias-depends-on-gate", resources)) == 1


def test_alias_on_a_non_blocking_gate_fails():
    resources = production_service(live="blue")
    find(resources, "production-vizconfig-blue-gate")["props"]["blocking"] = False
    [(_, message)] = run_stack_policy("alias-depends-on-gate", resources)
    assert "does not block" in message and "blocking=True" in message


def test_unknown_alias_value_needs_a_gate_of_the_same_service():
    resources = production_service()
    _alias(resources)["props"]["value"] = UNKNOWN
    assert run_stack_policy("alias-depends-on-gate", resources) == []
    _alias(resources)["props"]["key"] = UNKNOWN
    assert run_stack_policy("alias-depends-on-gate", resources) == []
    alias = _alias(resources)
    alias["dependencies"], alias["property_dependencies"] = [], {}
    assert len(run_stack_policy("alias-depends-on-gate", resources)) == 1


def test_other_keys_need_no_gate():
    resources = [consul_key("x-route", "bluegreen/routes/production/x", "x"),
                 consul_key("x-config", "bluegreen/config/production/x/page_size", "50"),
                 registration(payload=registration_payload())]
    assert check_alias_gated(resources, {}) == []
