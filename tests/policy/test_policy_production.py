from bluegreen.policies.rules.production import check_both_colours, service_identity
from policy_fakes import find, production_service, run_stack_policy

RULE = "production-keeps-both-colours"


def test_production_with_both_colours_passes():
    resources = production_service()
    assert check_both_colours(resources, {}) == []
    assert run_stack_policy(RULE, resources) == []


def test_production_missing_the_offline_colour_fails():
    resources = production_service(colours=("blue",), live="blue")
    [(urn, message)] = run_stack_policy(RULE, resources)
    assert urn == find(resources, "production-vizconfig")["urn"]
    assert "production/vizconfig has no green colour slot" in message
    assert "green: {version: ...}" in message and '"retired": ["production/vizconfig/green"]' in message


def test_retired_colour_in_config_passes():
    resources = production_service(colours=("blue",), live="blue")
    assert run_stack_policy(RULE, resources, {"retired": ["production/vizconfig/green"]}) == []
    # Retiring another service's colour, or another colour, does not help.
    assert run_stack_policy(RULE, resources, {"retired": ["production/other/green"]}) != []
    assert run_stack_policy(RULE, resources, {"retired": ["production/vizconfig/blue"]}) != []


def test_other_environments_may_run_one_colour():
    resources = production_service(colours=("blue",), environment="integration")
    assert run_stack_policy(RULE, resources) == []


def test_environments_are_configurable():
    resources = production_service(colours=("green",), live="green", environment="prod-eu")
    [(_, message)] = run_stack_policy(RULE, resources, {"environments": ["prod-eu"]})
    assert "prod-eu/vizconfig has no blue colour slot" in message


def test_identity_comes_from_the_alias_key_then_gates_then_labels_then_name():
    resources = production_service()
    service = find(resources, "production-vizconfig")
    descendants = [r for r in resources if r is not service]
    assert service_identity(service, descendants, ("production",)) == ("production", "vizconfig")
    no_keys = [r for r in descendants if "key" not in r["props"]]
    assert service_identity(service, no_keys, ()) == ("production", "vizconfig")
    only_containers = [r for r in descendants if r["type"].startswith("docker:")]
    assert service_identity(service, only_containers, ()) == ("production", "vizconfig")
    assert service_identity(service, [], ("production",)) == ("production", "vizconfig")
    assert service_identity(service, [], ("staging",)) is None


def test_a_service_with_no_slots_at_all_is_reported_per_colour():
    resources = [find(production_service(), "production-vizconfig")]
    assert len(run_stack_policy(RULE, resources)) == 2


# -- production-rollouts-analysed

def with_catalogue(resources, rollout, environment="production"):
    import json
    from policy_fakes import consul_key
    svc = find(resources, f"{environment}-vizconfig")
    entry = {"service": "vizconfig", "environment": environment, "rollout": rollout}
    return resources + [consul_key(f"{svc['name']}-catalogue", f"bluegreen/catalogue/{environment}/vizconfig",
                                   json.dumps(entry), parent=svc["urn"])]


def test_a_production_service_without_a_rollout_is_reported_with_the_fix():
    resources = with_catalogue(production_service(), None)
    [(urn, message)] = run_stack_policy("production-rollouts-analysed", resources)
    assert urn == find(resources, "production-vizconfig-catalogue")["urn"]
    assert "production/vizconfig flips all its traffic at once" in message
    assert "rollout: {steps: [5, 25, 50], stepTime: 2m}" in message


def test_a_rollout_an_exemption_or_another_environment_passes():
    rolled = with_catalogue(production_service(), {"steps": [10, 50], "stepS": 60})
    assert run_stack_policy("production-rollouts-analysed", rolled) == []
    bare = with_catalogue(production_service(), None)
    assert run_stack_policy("production-rollouts-analysed", bare, {"exempt": ["production/vizconfig"]}) == []
    staging = with_catalogue(production_service(environment="integration"), None, "integration")
    assert run_stack_policy("production-rollouts-analysed", staging) == []
