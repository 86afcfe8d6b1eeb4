"""gate_problems and wait_for_gate: what keeps a colour's health gate closed, and how it polls."""

import pytest
from hypothesis import given, strategies as st

from bluegreen.components.consul import checks, health_gate
from bluegreen.components.consul.api import CheckState
from bluegreen.components.consul.checks import Unreachable, gate_problems, wait_for_gate
from unit_harness import FakeClock


def check(instance, status="passing", name=None, node="local", output=""):
    return CheckState(service_id=instance, node=node, name=name or f"HTTP GET /health on {instance}",
                      status=status, output=output)


def test_all_passing_means_no_problems():
    checks = {"i-0": [check("i-0")],
              "i-1": [check("i-1", node="second"), check("i-1", name="serf", node="second")]}
    assert gate_problems(checks) == []


def test_a_pass_measured_at_an_old_address_does_not_count():
    # A replaced container re-registered at a new port keeps its old check's "passing" until
    # the check runs again; only a pass measured at the registered address opens the gate.
    stale = CheckState("i-0", "local", "HTTP GET /health on i-0", "passing",
                       "HTTP GET http://127.0.0.1:32770/health: 200 OK", target="127.0.0.1:32777")
    problems = gate_problems({"i-0": [stale]})
    assert problems == ["check 'HTTP GET /health on i-0' on node local has not run against "
                        "127.0.0.1:32777 yet"]
    fresh = CheckState("i-0", "local", "HTTP GET /health on i-0", "passing",
                       "HTTP GET http://127.0.0.1:32777/health: 200 OK", target="127.0.0.1:32777")
    assert gate_problems({"i-0": [fresh]}) == []


def test_no_instances_expected_means_no_problems():
    assert gate_problems({}) == []


def test_missing_instance_is_named():
    problems = gate_problems({"i-0": [check("i-0")], "i-1": None})
    assert len(problems) == 1
    assert "i-1" in problems[0]
    assert "not registered" in problems[0]


def test_instance_without_checks_keeps_the_gate_closed():
    problems = gate_problems({"i-0": []})
    assert len(problems) == 1 and "i-0" in problems[0]


def test_critical_check_names_check_node_and_output():
    checks = {"i-0": [check("i-0")],
              "i-1": [check("i-1", "critical", name="HTTP GET /health on i-1", node="edge-2",
                            output="Get http://127.0.0.1:32770/health: connection refused")]}
    problems = gate_problems(checks)
    assert len(problems) == 1
    problem = problems[0]
    assert "HTTP GET /health on i-1" in problem
    assert "edge-2" in problem
    assert "critical" in problem
    assert "connection refused" in problem


def test_warning_is_not_passing():
    problems = gate_problems({"i-0": [check("i-0", "warning", output="slow")]})
    assert len(problems) == 1 and "warning" in problems[0]


def test_empty_output_is_described():
    problems = gate_problems({"i-0": [check("i-0", "critical", output="  ")]})
    assert "no output yet" in problems[0]


def test_long_multiline_output_is_shortened_to_one_line():
    problems = gate_problems({"i-0": [check("i-0", "critical", output="line\n" * 500)]})
    assert "\n" not in problems[0]
    assert len(problems[0]) < 400


def test_every_failing_check_is_reported():
    checks = {"i-0": [check("i-0", "critical", name="a"), check("i-0", "critical", name="b")],
              "i-1": [check("i-1", "critical", name="c")],
              "i-2": None}
    problems = gate_problems(checks)
    assert len(problems) == 4
    assert sum("not registered" in p for p in problems) == 1
    assert {"'a'", "'b'", "'c'"} <= {word for p in problems for word in p.split()}


STATUSES = st.sampled_from(["passing", "warning", "critical"])
per_instance = st.one_of(st.none(), st.lists(st.builds(check, st.just("x"), STATUSES), max_size=4))
observations = st.dictionaries(st.sampled_from([f"i-{n}" for n in range(6)]), per_instance, max_size=6)


@given(observations)
def test_problems_empty_iff_every_instance_has_checks_all_passing(checks):
    healthy = all(found and all(c.status == "passing" for c in found) for found in checks.values())
    assert (gate_problems(checks) == []) == healthy


@given(observations)
def test_one_problem_per_unregistered_or_checkless_instance_or_failing_check(checks):
    expected = sum(1 if not found else sum(c.status != "passing" for c in found)
                   for found in checks.values())
    assert len(gate_problems(checks)) == expected


# --- polling -------------------------------------------------------------------------------------

@pytest.fixture
def clock(monkeypatch):
    return FakeClock().install(monkeypatch, checks)


def test_wait_for_gate_asks_each_instance_at_its_own_agent_and_passes(monkeypatch, clock):
    asked = []

    def agent_service_checks(agent, instance, token):
        assert token == "deployer-token"
        asked.append((agent, instance))
        # Becomes healthy after three seconds.
        return [check(instance, "passing" if clock.now >= 3 else "critical")]

    monkeypatch.setattr(checks.consul_api, "agent_service_checks", agent_service_checks)
    waited = wait_for_gate({"i-0": "http://a:8500", "i-1": "http://b:8500"}, 60, "local/svc/green",
                           "deployer-token")
    assert 3 <= waited < 4
    assert ("http://a:8500", "i-0") in asked and ("http://b:8500", "i-1") in asked
    assert not any(pair in asked for pair in [("http://a:8500", "i-1"), ("http://b:8500", "i-0")])


def test_wait_for_gate_times_out_naming_label_and_failing_checks(monkeypatch, clock):
    monkeypatch.setattr(checks.consul_api, "agent_service_checks",
                        lambda agent, instance, token: [check(instance, "critical", node="edge-1",
                                                       output="HTTP 500")])
    with pytest.raises(RuntimeError) as raised:
        wait_for_gate({"i-0": "http://a:8500"}, 10, "integration/vizconfig/green", "t")
    message = str(raised.value)
    assert "integration/vizconfig/green" in message
    assert "HTTP GET /health on i-0" in message and "edge-1" in message and "HTTP 500" in message
    assert 10 <= clock.now <= 11


def test_an_unreachable_agent_names_the_instance_and_keeps_the_gate_closed(monkeypatch, clock):
    def agent_service_checks(agent, instance, _token):
        if "lab2" in agent:
            raise checks.consul_api.ConsulError(f"Consul at {agent} is unreachable (timeout)")
        return [check(instance)]

    monkeypatch.setattr(checks.consul_api, "agent_service_checks", agent_service_checks)
    with pytest.raises(RuntimeError) as raised:
        wait_for_gate({"prod-viz-green-lab1-0": "http://lab1:8500",
                       "prod-viz-green-lab2-0": "http://lab2:8500"}, 10, "prod/viz/green", "token")
    message = str(raised.value)
    assert "prod-viz-green-lab2-0" in message and "http://lab2:8500 does not answer" in message
    assert "lab1-0" not in message
    assert 10 <= clock.now <= 11


def test_an_instance_not_yet_passing_in_the_catalog_keeps_the_gate_closed():
    # Its agent says passing, but the servers have not recorded it (an election was under way):
    # the proxy renders from the catalog and would have nothing to send traffic to.
    checks = {"i-0": [check("i-0")], "i-1": [check("i-1")]}
    assert gate_problems(checks, catalog={"i-0", "i-1"}) == []
    problems = gate_problems(checks, catalog={"i-0"})
    assert problems == ["instance i-1 passes on its agent but not yet in the catalog (the proxy's view)"]
    unread = gate_problems(checks, catalog=Unreachable("http://a:8500", "No cluster leader"))
    assert unread and "catalog could not be read through http://a:8500" in unread[0]


def test_wait_for_gate_asks_the_catalog_when_given_the_service(monkeypatch, clock):
    monkeypatch.setattr(checks.consul_api, "agent_service_checks",
                        lambda agent, instance, _token: [check(instance)])
    monkeypatch.setattr(checks.consul_api, "catalog_passing",
                        lambda agent, service, _token: {"i-0"} if clock.now >= 2 else set())
    assert 2 <= wait_for_gate({"i-0": "http://a:8500"}, 10, "x/svc/green", "token", service="svc") < 3


def test_only_what_the_gate_gates_re_runs_it():
    provider = health_gate._HealthGateProvider()
    olds = {"service": "svc", "colour": "green", "instances": {"i-0": "http://a:8500"},
            "revision": {"image": "r@sha256:1"}, "preview_url": "http://p/preview/e/svc/",
            "token": "t1", "waited_s": 1.0, "passing": True, "problems": []}
    moved = {**olds, "preview_url": "http://p/preview/e/svc/health", "token": "t2"}
    assert provider.diff("id", olds, moved).changes is False
    redeployed = {**olds, "revision": {"image": "r@sha256:2"}}
    assert provider.diff("id", olds, redeployed).changes is True
