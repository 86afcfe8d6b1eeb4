from bluegreen.policies.rules.registration import check_http_health, check_registered, find_registration
from policy_fakes import (UNKNOWN, find, production_service, registration_payload,
                          run_stack_policy, service_container)


def test_a_deployed_service_passes_both_rules():
    resources = production_service()
    assert check_registered(resources, {}) == []
    assert check_http_health(resources, {}) == []
    assert run_stack_policy("service-registered-with-tags", resources) == []
    assert run_stack_policy("service-http-health-check", resources) == []


def test_registration_is_found_by_instance_id_then_by_name():
    resources = production_service()
    box = find(resources, "production-vizconfig-blue-local-0")
    registrations = [r for r in resources if r["name"].endswith("-registration")]
    assert find_registration(box, registrations)["name"] == f"{box['name']}-registration"
    renamed = [dict(r, name="other") for r in registrations]
    assert find_registration(box, renamed)["props"]["payload"]["ID"] == \
        "production-vizconfig-blue-local-0"


def test_unregistered_service_container_fails_both_rules():
    resources = [r for r in production_service() if not r["name"].endswith("-registration")]
    registered = run_stack_policy("service-registered-with-tags", resources)
    health = run_stack_policy("service-http-health-check", resources)
    assert len(registered) == 2 and len(health) == 2
    urn, message = registered[0]
    assert urn.endswith("::production-vizconfig-blue-local-0") or \
        urn.endswith("::production-vizconfig-green-local-0")
    assert "has no Consul registration" in message and "AgentRegistration" in message


def test_missing_tags_are_reported_on_the_registration():
    resources = production_service()
    reg = find(resources, "production-vizconfig-green-local-0-registration")
    reg["props"]["payload"]["Tags"] = ["production"]
    [(urn, message)] = run_stack_policy("service-registered-with-tags", resources)
    assert urn == reg["urn"]
    assert "missing green" in message and "Tags=[environment, colour]" in message


def test_wrong_id_and_name_are_reported():
    resources = production_service()
    reg = find(resources, "production-vizconfig-blue-local-0-registration")
    reg["props"]["payload"]["ID"] = "production-vizconfig-blue-local-9"
    reg["props"]["payload"]["Name"] = "other"
    messages = [m for _, m in run_stack_policy("service-registered-with-tags", resources)]
    assert any("has ID 'production-vizconfig-blue-local-9'" in m for m in messages)
    assert any("registers Consul service 'other'" in m for m in messages)


def test_unknown_payload_during_preview_passes():
    resources = production_service()
    for reg in resources:
        if reg["name"].endswith("-registration"):
            reg["props"]["payload"] = UNKNOWN
    assert run_stack_policy("service-registered-with-tags", resources) == []
    assert run_stack_policy("service-http-health-check", resources) == []


def test_registration_without_http_check_fails():
    resources = production_service()
    reg = find(resources, "production-vizconfig-blue-local-0-registration")
    reg["props"]["payload"]["Check"] = {"TCP": "127.0.0.1:32768", "Interval": "1s"}
    [(urn, message)] = run_stack_policy("service-http-health-check", resources)
    assert urn == reg["urn"] and "no HTTP check" in message and "health:" in message


def test_http_check_in_checks_list_counts():
    payload = registration_payload()
    payload["Checks"] = [payload.pop("Check")]
    resources = production_service(colours=("blue",))
    find(resources, "production-vizconfig-blue-local-0-registration")["props"]["payload"] = payload
    assert check_http_health(resources, {}) == []


def test_non_service_containers_need_no_registration():
    resources = [service_container(labels=[{"label": "bluegreen.role", "value": "dependency"}])]
    assert check_registered(resources, {}) == []
    assert check_http_health(resources, {}) == []
