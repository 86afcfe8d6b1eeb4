"""Green calls green, end to end: frontend calls vizconfig through the proxy. A request on
frontend's preview URI reaches vizconfig's offline colour, one on its stable URI vizconfig's live
colour, and with no offline vizconfig the preview request falls back to its live colour. The
catalogue shows what frontend calls. Real build, Consul, consul-template and nginx; in order."""

from __future__ import annotations

import json
import os

import jsonschema
import pytest
import requests

from e2e_harness import (REPO, catalogue_page_rows, deployed, deployer_consul, get_json, platform_config,
                         wait_until)

STACK = ENV = "e2e-calls"
PORTS = {"consul": 29600, "serf": 29601, "server": 29602, "registry": 29603, "proxy": 29604}
PROXY = f"http://127.0.0.1:{PORTS['proxy']}"
CONSUL = f"http://127.0.0.1:{PORTS['consul']}"
FRONTEND_STABLE = f"{PROXY}/{ENV}/frontend/"
FRONTEND_PREVIEW = f"{PROXY}/preview/{ENV}/frontend/"
VIZCONFIG_STABLE = f"{PROXY}/{ENV}/vizconfig/"
# The proxy's bridge listener (the host's bridge address, as platform_config names it): where
# callers inside the platform reach it, and the only place the preview header counts.
VIZCONFIG_INSIDE = f"http://172.17.0.1:{PORTS['proxy']}/{ENV}/vizconfig/"
PREVIEW_HEADER = "X-Bluegreen-Preview"
VERSIONS = {"frontend": {"blue": "1.0.0", "green": "1.1.0"},
            "vizconfig": {"blue": "1.0.0", "green": "2.0.0"}}


def service_settings(service: str, colours=("blue", "green")) -> dict:
    settings = {"manifest": f"services/{service}/service.yaml", "live": "blue", "gateTimeout": 60}
    for colour in colours:
        settings[colour] = {"version": VERSIONS[service][colour]}
    return settings


@pytest.fixture(scope="module")
def stack():
    """frontend first, alone (its callee not routed yet), then vizconfig beside it."""
    config = platform_config(PORTS, ENV)
    config["bluegreen:services"] = {"frontend": service_settings("frontend")}
    with deployed(STACK, config) as deployment:
        deployment.caller_alone = {"outputs": deployment.up(),
                                   "answer": requests.get(FRONTEND_STABLE, timeout=5)}
        deployment.update_config(lambda c: c["bluegreen:services"].__setitem__(
            "vizconfig", service_settings("vizconfig")))
        deployment.up()
        yield deployment


def test_a_caller_flips_while_its_callee_has_no_route(stack):
    # The flip is proven on frontend's health path, which does not call vizconfig: frontend's own
    # answer is a 502 (its callee is not routed), and that must not undo its flip.
    outputs, response = stack.caller_alone["outputs"], stack.caller_alone["answer"]
    assert outputs["services"]["frontend"]["live"] == "blue"
    assert outputs["services"]["frontend"]["flipSeconds"] > 0
    assert (response.status_code, response.headers.get("X-Bluegreen-Colour")) == (502, "blue")
    assert "error" in response.json()["vizconfig"]


def answer(url: str, headers: dict | None = None) -> dict:
    """The JSON body of a GET on a fresh connection, with the proxy's route and colour."""
    response = requests.get(url, timeout=5, headers={"Connection": "close", **(headers or {})})
    assert response.status_code == 200, (url, response.status_code, response.text[:300])
    body = response.json()
    body["proxy"] = (response.headers.get("X-Bluegreen-Route"), response.headers.get("X-Bluegreen-Colour"))
    return body


def identity(body: dict) -> tuple[str, str]:
    return body["colour"], body["version"]


def called(body: dict) -> tuple[str, str]:
    """What frontend says vizconfig answered it: (colour, version)."""
    return body["vizconfig"]["colour"], body["vizconfig"]["version"]


def test_a_preview_request_of_frontend_reaches_vizconfigs_offline_colour(stack):
    body = answer(FRONTEND_PREVIEW)
    assert body["proxy"] == (f"preview/{ENV}/frontend", "green")
    assert identity(body) == ("green", VERSIONS["frontend"]["green"])
    assert called(body) == ("green", VERSIONS["vizconfig"]["green"])


def test_a_stable_request_of_frontend_reaches_vizconfigs_live_colour(stack):
    body = answer(FRONTEND_STABLE)
    assert body["proxy"] == (f"{ENV}/frontend", "blue")
    assert identity(body) == ("blue", VERSIONS["frontend"]["blue"])
    assert called(body) == ("blue", VERSIONS["vizconfig"]["blue"])


def test_the_header_moves_only_requests_of_its_own_environment_from_inside(stack):
    assert answer(VIZCONFIG_INSIDE)["proxy"] == (f"{ENV}/vizconfig", "blue")
    assert answer(VIZCONFIG_INSIDE, {PREVIEW_HEADER: ENV})["proxy"] == (f"{ENV}/vizconfig", "green")
    assert answer(VIZCONFIG_INSIDE, {PREVIEW_HEADER: "elsewhere"})["proxy"] == (f"{ENV}/vizconfig", "blue")
    # On the public listener it counts for nothing.
    assert answer(VIZCONFIG_STABLE, {PREVIEW_HEADER: ENV})["proxy"] == (f"{ENV}/vizconfig", "blue")


def test_the_catalogue_shows_what_frontend_calls(stack):
    with open(os.path.join(REPO, "images", "proxy", "catalogue.schema.json"), encoding="utf-8") as handle:
        schema = json.load(handle)

    def rows():
        data = get_json(f"{PROXY}/catalogue.json")
        jsonschema.validate(data, schema)
        return {s["entry"]["service"]: s for s in data["services"] if s["entry"]["environment"] == ENV}

    services, _ = wait_until(lambda: (r := rows()) and {"frontend", "vizconfig"} <= set(r) and r, 10,
                             what="both services in the catalogue")
    assert services["frontend"]["entry"]["calls"] == [{"service": "vizconfig",
                                                       "stableUri": f"/{ENV}/vizconfig/"}]
    assert services["vizconfig"]["entry"]["calls"] == []
    page = catalogue_page_rows(PROXY)
    assert page[(ENV, "frontend")]["calls"] == f"vizconfig /{ENV}/vizconfig/"
    assert page[(ENV, "vizconfig")]["calls"] == ""


def test_without_an_offline_vizconfig_the_preview_request_falls_back_to_its_live_colour(stack):
    stack.update_config(lambda c: c["bluegreen:services"].__setitem__(
        "vizconfig", service_settings("vizconfig", colours=("blue",))))
    stack.up()
    wait_until(lambda: deployer_consul(STACK).get(
        f"{CONSUL}/v1/health/service/vizconfig?tag={ENV}&tag=green", timeout=3).json() == [],
               10, what="vizconfig's green instances deregistered")
    preview = answer(FRONTEND_PREVIEW)
    assert identity(preview) == ("green", VERSIONS["frontend"]["green"])
    assert called(preview) == ("blue", VERSIONS["vizconfig"]["blue"])
    assert called(answer(FRONTEND_STABLE)) == ("blue", VERSIONS["vizconfig"]["blue"])
    assert answer(VIZCONFIG_STABLE, {PREVIEW_HEADER: ENV})["proxy"] == (f"{ENV}/vizconfig", "blue")
