"""Proof that traffic moved: what an answer proves, how the proof polls, and that an alias whose
proof fails is put back; the offline gate's wait for its preview URI."""

from types import SimpleNamespace

import pytest
import requests

from bluegreen.components.consul import api as consul_api
from bluegreen.components.consul import checks, health_gate, route_proof
from bluegreen.components.consul.route_proof import COLOUR_HEADER, ROUTE_HEADER, route_problem, wait_for_route
from unit_harness import FakeClock

URL = "http://127.0.0.1:18080/integration/vizconfig/"


def headers(route="integration/vizconfig", colour="green"):
    return {ROUTE_HEADER: route, COLOUR_HEADER: colour}


def test_an_answer_from_the_colour_on_its_route_proves_it():
    assert route_problem(200, headers(), "integration/vizconfig", "green") is None
    # The service's own status does not matter: only the proxy's failure to reach it does.
    assert route_problem(404, headers(), "integration/vizconfig", "green") is None


def test_the_old_colour_a_proxy_error_or_another_route_is_no_proof():
    assert "still serves blue" in route_problem(200, headers(colour="blue"),
                                                "integration/vizconfig", "green")
    assert "answers 502" in route_problem(502, headers(), "integration/vizconfig", "green")
    assert "(no route header)" in route_problem(200, {}, "integration/vizconfig", "green")
    assert "preview/integration/vizconfig" in route_problem(
        200, headers(route="preview/integration/vizconfig"), "integration/vizconfig", "green")


@pytest.fixture
def clock(monkeypatch):
    return FakeClock().install(monkeypatch, route_proof, health_gate)


class Answer:
    def __init__(self, status, answer_headers):
        self.status_code, self.headers = status, answer_headers

    def __enter__(self):
        return self

    def __exit__(self, *_):
        return False


def proxy(monkeypatch, clock, answers):
    """requests.get answers with answers(now, url): (status, headers) or an exception to raise."""
    asked = []

    def get(url, **kwargs):
        asked.append((url, kwargs))
        clock.now += 0.001
        answer = answers(clock.now, url)
        if isinstance(answer, Exception):
            raise answer
        return Answer(*answer)

    monkeypatch.setattr(route_proof.requests, "get", get)
    return asked


def test_the_proof_polls_fresh_connections_until_the_new_colour_answers(monkeypatch, clock):
    asked = proxy(monkeypatch, clock, lambda now, url: (200, headers(colour="green" if now >= 0.03 else "blue")))
    seconds = wait_for_route(URL, "integration/vizconfig", "green", 5, started=0.0)
    assert 0.03 <= seconds < 0.05
    assert all(kwargs["headers"]["Connection"] == "close" for _, kwargs in asked)
    assert all(url == URL for url, _ in asked)


def test_the_proof_times_out_saying_what_the_proxy_still_serves(monkeypatch, clock):
    proxy(monkeypatch, clock, lambda now, url: (200, headers(colour="blue")))
    with pytest.raises(RuntimeError) as raised:
        wait_for_route(URL, "integration/vizconfig", "green", 2)
    assert f"the proxy at {URL} still serves blue (answers 200) after 2s" == str(raised.value)
    assert 2 <= clock.now < 2.1


def test_an_unreachable_proxy_is_named(monkeypatch, clock):
    proxy(monkeypatch, clock, lambda now, url: requests.ConnectionError("refused"))
    with pytest.raises(RuntimeError, match="does not answer \\(ConnectionError\\)"):
        wait_for_route(URL, "integration/vizconfig", "green", 1)


PREVIEW = "http://127.0.0.1:18080/preview/integration/vizconfig/"
ALIAS = {"address": "http://127.0.0.1:18500", "key": "bluegreen/aliases/integration/vizconfig",
         "value": "green", "url": URL, "route": "integration/vizconfig", "preview_url": PREVIEW,
         "preview_route": "preview/integration/vizconfig", "timeout_s": 3, "token": "deployer",
         "flip_s": None}


@pytest.fixture
def kv(monkeypatch):
    store = {}
    monkeypatch.setattr(consul_api, "kv_put",
                        lambda address, key, value, token: store.__setitem__(key, value))
    monkeypatch.setattr(consul_api, "kv_delete",
                        lambda address, key, token, recurse=False: store.pop(key, None))
    monkeypatch.setattr(consul_api, "kv_get", lambda address, key, token: store.get(key))
    return store


def routed_by(kv, stuck=False, preview_status=200):
    """A proxy that routes by the alias in `kv` (or by blue, when `stuck`)."""
    def answers(_now, url):
        live = "blue" if stuck else kv.get(ALIAS["key"], "blue")
        if url == PREVIEW:
            other = "green" if live == "blue" else "blue"
            return preview_status, headers("preview/integration/vizconfig", other)
        return 200, headers(colour=live)
    return answers


def test_a_proven_flip_records_the_seconds_from_write_to_serving(monkeypatch, clock, kv):
    kv[ALIAS["key"]] = "blue"
    asked = proxy(monkeypatch, clock, routed_by(kv))
    result = route_proof._AliasKeyProvider().update(ALIAS["key"], {**ALIAS, "value": "blue"}, ALIAS)
    assert kv[ALIAS["key"]] == "green"
    assert result.outs["flip_s"] == pytest.approx(0.001, abs=0.001)
    # Green answered on the preview URI before the alias moved.
    assert asked[0][0] == PREVIEW


def test_an_alias_does_not_move_to_a_colour_the_proxy_cannot_serve_yet(monkeypatch, clock, kv):
    kv[ALIAS["key"]] = "blue"
    proxy(monkeypatch, clock, routed_by(kv, preview_status=502))
    with pytest.raises(RuntimeError) as raised:
        route_proof._AliasKeyProvider().update(ALIAS["key"], {**ALIAS, "value": "blue"}, ALIAS)
    message = str(raised.value)
    assert message.startswith("alias bluegreen/aliases/integration/vizconfig was not moved to green: "
                              f"the proxy at {PREVIEW} routes to green but answers 502")
    assert message.endswith("traffic stays on blue")
    assert kv[ALIAS["key"]] == "blue"


def test_an_alias_written_already_needs_no_readiness_check(monkeypatch, clock, kv):
    kv[ALIAS["key"]] = "green"      # a rollback wrote it; the up brings state in line
    asked = proxy(monkeypatch, clock, routed_by(kv))
    route_proof._AliasKeyProvider().update(ALIAS["key"], {**ALIAS, "value": "blue"}, ALIAS)
    assert [url for url, _ in asked] == [URL]


def test_an_unproven_flip_fails_and_puts_the_alias_back(monkeypatch, clock, kv):
    kv[ALIAS["key"]] = "blue"
    proxy(monkeypatch, clock, routed_by(kv, stuck=True))
    with pytest.raises(RuntimeError) as raised:
        route_proof._AliasKeyProvider().update(ALIAS["key"], {**ALIAS, "value": "blue"}, ALIAS)
    message = str(raised.value)
    assert "alias bluegreen/aliases/integration/vizconfig was written (green)" in message
    assert "still serves blue" in message and "traffic did not move" in message
    assert message.endswith("so the alias was put back to blue")
    assert kv[ALIAS["key"]] == "blue"


def test_an_unproven_first_alias_is_removed(monkeypatch, clock, kv):
    proxy(monkeypatch, clock, lambda now, url: (502, headers()))  # no readiness check: nothing was live
    with pytest.raises(RuntimeError, match="answers 502.*removed again"):
        route_proof._AliasKeyProvider().create(ALIAS)
    assert ALIAS["key"] not in kv


def test_the_alias_diff_is_consul_keys_a_new_proxy_url_alone_rewrites_nothing():
    provider = route_proof._AliasKeyProvider()
    assert not provider.diff(ALIAS["key"], ALIAS, {**ALIAS, "url": "http://elsewhere/"}).changes
    assert provider.diff(ALIAS["key"], ALIAS, {**ALIAS, "value": "blue"}).changes


# -- the offline gate ------------------------------------------------------------------------------

GATE = {"service": "vizconfig", "environment": "integration", "colour": "green",
        "instances": {"integration-vizconfig-green-local-0": "http://127.0.0.1:18500"},
        "timeout_s": 20, "blocking": False, "revision": {"image": "new"},
        "preview_url": "http://127.0.0.1:18080/preview/integration/vizconfig/",
        "preview_route": "preview/integration/vizconfig", "token": "deployer"}


def passing(agent, instance, token):
    return [SimpleNamespace(service_id=instance, node="local", name="HTTP GET /health", status="passing",
                            output="", target="")]


def test_a_new_offline_deploy_waits_until_its_preview_uri_answers(monkeypatch, clock):
    calls = []
    monkeypatch.setattr(health_gate, "wait_for_gate", lambda *args: calls.append("gate") or 1.0)
    monkeypatch.setattr(health_gate, "wait_for_route",
                        lambda url, route, colour, timeout_s, **_: calls.append((url, route, colour)) or 0.3)
    outs = health_gate._HealthGateProvider().create(GATE).outs
    assert calls == ["gate", (GATE["preview_url"], "preview/integration/vizconfig", "green")]
    assert outs["passing"] is True and outs["problems"] == []


def test_a_broken_offline_deploy_is_reported_never_raised(monkeypatch, clock):
    def no_route(*_args, **_kwargs):
        raise RuntimeError("the proxy at X routes to green but answers 502")

    monkeypatch.setattr(health_gate, "wait_for_gate", lambda *args: 1.0)
    monkeypatch.setattr(health_gate, "wait_for_route", no_route)
    monkeypatch.setattr(checks.consul_api, "agent_service_checks", passing)
    outs = health_gate._HealthGateProvider().update("id", {**GATE, "revision": {"image": "old"}}, GATE).outs
    assert outs["passing"] is False
    assert outs["problems"] == ["the proxy at X routes to green but answers 502"]


def test_a_colour_a_flip_made_offline_does_not_wait(monkeypatch, clock):
    monkeypatch.setattr(health_gate, "wait_for_gate", lambda *args: pytest.fail("waited"))
    monkeypatch.setattr(health_gate, "wait_for_route", lambda *args: pytest.fail("waited"))
    monkeypatch.setattr(checks.consul_api, "agent_service_checks", passing)
    monkeypatch.setattr(checks, "read_catalog", lambda instances, _service: set(instances))
    olds = {**GATE, "blocking": True}
    outs = health_gate._HealthGateProvider().update("id", olds, GATE).outs
    assert outs["passing"] is True and outs["waited_s"] == 0.0


# -- several proxies -------------------------------------------------------------------------------

ELSEWHERE = "http://10.250.77.12:29080/integration/vizconfig/"


def test_a_flip_is_proven_on_every_proxy_and_the_proof_names_each(monkeypatch, clock, kv):
    kv[ALIAS["key"]] = "blue"
    asked = proxy(monkeypatch, clock, routed_by(kv))
    both = {**ALIAS, "urls": {"lab1": URL, "lab2": ELSEWHERE}}
    result = route_proof._AliasKeyProvider().update(ALIAS["key"], {**both, "value": "blue"}, both)
    assert set(result.outs["proofs"]) == {"lab1", "lab2"}
    assert result.outs["flip_s"] == max(result.outs["proofs"].values())
    assert {URL, ELSEWHERE} <= {url for url, _ in asked}


def test_one_proxy_that_keeps_the_old_colour_fails_the_flip_naming_it(monkeypatch, clock, kv):
    kv[ALIAS["key"]] = "blue"
    live = routed_by(kv)
    proxy(monkeypatch, clock, lambda now, url: (200, headers(colour="blue")) if url == ELSEWHERE
          else live(now, url))
    both = {**ALIAS, "urls": {"lab1": URL, "lab2": ELSEWHERE}}
    with pytest.raises(RuntimeError) as raised:
        route_proof._AliasKeyProvider().update(ALIAS["key"], {**both, "value": "blue"}, both)
    message = str(raised.value)
    assert f"the proxy at {ELSEWHERE} still serves blue" in message and "(proxy on lab2)" in message
    assert "lab1" not in message
    assert message.endswith("so the alias was put back to blue")
    assert kv[ALIAS["key"]] == "blue"
