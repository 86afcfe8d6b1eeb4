"""Several hosts, two environments on one shared platform (StackReference), service config in
Consul, and the service catalogue (JSON schema + headless Chromium). Runs in order."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import jsonschema
import pytest
import requests
import yaml

from e2e_harness import (HOST2_DOCKER, LOG_DIR, REPO, Deployment, RequestLoop, RowReader, catalogue_page_rows,
                         chromium_dom,
                         container_identity, docker_names, get_json, host_entries, platform_config,
                         require_environment, wait_until)
from e2e_harness import consul as consul_session

from bluegreen.components.naming import alias_key, config_prefix

PORTS = {"consul": 28900, "serf": 28901, "server": 28902, "registry": 28905, "proxy": 28980,
         "host2_consul": 28910, "host2_serf": 28911, "host2_server": 28912}
PROXY = f"http://127.0.0.1:{PORTS['proxy']}"
ENVIRONMENTS = {"e2e-env-int": "e2e-int", "e2e-env-prod": "e2e-prod"}
PLATFORM = "e2e-env-platform"
FIGURES: dict = {}


def stable(env: str) -> str:
    return f"{PROXY}/{env}/vizconfig/"


def environment_config(env: str, manifest: str, **service) -> dict:
    settings = {"manifest": manifest, "hosts": ["local", "host2"], "live": "blue",
                "blue": {"version": "1.0.0"}, "gateTimeout": 60, **service}
    return {
        "bluegreen:environment": env,
        "bluegreen:platformStack": f"organization/bluegreen/{PLATFORM}",
        "bluegreen:buildHost": "local",
        "bluegreen:baseImage": "bluegreen/base:bookworm",
        "bluegreen:hosts": host_entries(PORTS, second_host=True),
        "bluegreen:services": {"vizconfig": settings},
    }


@pytest.fixture(scope="module")
def service_repo():
    """A copy of the example service's repo, so a test can change its manifest's config."""
    directory = tempfile.mkdtemp(prefix="bluegreen-vizconfig-")
    shutil.copytree(os.path.join(REPO, "services", "vizconfig"), directory, dirs_exist_ok=True)
    yield os.path.join(directory, "service.yaml")
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def stacks(service_repo):
    require_environment()
    platform = Deployment(PLATFORM, platform_config(PORTS, "", second_host=True,
                                                 environments=tuple(ENVIRONMENTS.values())))
    environments = {}
    try:
        platform.up()
        for stack, env in ENVIRONMENTS.items():
            environments[env] = Deployment(stack, environment_config(env, service_repo))
            environments[env].up()
        yield platform, environments
    finally:
        for deployment in environments.values():
            deployment.remove()
        platform.remove()
        os.makedirs(LOG_DIR, exist_ok=True)
        with open(os.path.join(LOG_DIR, "environments-figures.json"), "w") as handle:
            json.dump(FIGURES, handle, indent=2)


def catalogue() -> dict:
    return get_json(f"{PROXY}/catalogue.json")


def catalogue_row(env: str) -> dict:
    return next(s for s in catalogue()["services"] if s["entry"]["environment"] == env)


def test_both_environments_serve_from_both_hosts(stacks):
    for env in ENVIRONMENTS.values():
        body = get_json(stable(env))
        assert (body["environment"], body["version"], body["colour"]) == (env, "1.0.0", "blue")
        instances = catalogue_row(env)["instances"]
        assert sorted((i["host"], i["status"]) for i in instances) == \
            [("host2", "passing"), ("local", "passing")]
    # The environments share the platform's agents and proxy, told apart by tags and aliases.
    platform, _ = stacks
    catalog = consul_session(platform.deployer_token("e2e-int")).get(
        f"http://127.0.0.1:{PORTS['consul']}/v1/catalog/service/vizconfig", timeout=3).json()
    tags = {tuple(s["ServiceTags"]) for s in catalog}
    assert tags == {("e2e-int", "blue"), ("e2e-prod", "blue")}


def test_an_environments_deployer_cannot_flip_or_read_the_configuration_of_another(stacks):
    platform, _ = stacks
    consul = f"http://127.0.0.1:{PORTS['consul']}/v1/kv"
    integration = consul_session(platform.deployer_token("e2e-int"))
    production_alias = f"{consul}/{alias_key('e2e-prod', 'vizconfig')}"
    assert integration.get(production_alias, params={"raw": ""}, timeout=3).text == "blue"
    refused = integration.put(production_alias, data="green", timeout=3)
    assert refused.status_code == 403, (refused.status_code, refused.text)
    assert integration.get(f"{consul}/{config_prefix('e2e-prod', 'vizconfig')}", params={"recurse": ""},
                           timeout=3).status_code in (403, 404)
    # Its own environment's alias it may write (the same value back: nothing moves).
    own = f"{consul}/{alias_key('e2e-int', 'vizconfig')}"
    assert integration.put(own, data=integration.get(own, params={"raw": ""}, timeout=3).text,
                           timeout=3).json() is True
    assert get_json(stable("e2e-prod"))["colour"] == "blue"
    assert docker_names("container", "bluegreen-e2e-prod-vizconfig-blue-host2", host=HOST2_DOCKER)


def test_catalogue_json_follows_its_schema(stacks):
    with open(os.path.join(REPO, "images", "proxy", "catalogue.schema.json")) as handle:
        schema = json.load(handle)
    data = catalogue()
    jsonschema.validate(data, schema)
    assert {s["entry"]["environment"] for s in data["services"]} == set(ENVIRONMENTS.values())
    row = catalogue_row("e2e-prod")
    assert row["live"] == "blue"
    assert row["entry"]["stableUri"] == "/e2e-prod/vizconfig/"
    assert row["entry"]["colours"]["blue"]["image"].endswith(row["entry"]["colours"]["blue"]["digest"])


def assert_prod_row(row: dict) -> None:
    assert row["uri"] == "/e2e-prod/vizconfig/"
    assert row["live"] == "blue"
    assert row["description"].startswith("Visualization configuration storage")
    assert row["blue"].startswith("1.0.0 sha256:")
    assert "host2: blue 1.0.0 passing" in row["instances"]


def test_catalogue_page_is_served_without_javascript(stacks):
    rows = catalogue_page_rows(PROXY)
    assert set(rows) == {(env, "vizconfig") for env in ENVIRONMENTS.values()}
    assert_prod_row(rows[("e2e-prod", "vizconfig")])
    assert rows[("e2e-prod", "vizconfig")]["green"] == "—"


def test_catalogue_without_its_slash_redirects(stacks):
    response = requests.get(f"{PROXY}/catalogue", allow_redirects=False, timeout=5)
    assert response.status_code == 301
    assert response.headers["Location"] == "/catalogue/"
    followed = requests.get(f"{PROXY}/catalogue", timeout=5)
    assert followed.url == f"{PROXY}/catalogue/" and followed.status_code == 200
    assert "data-service=\"vizconfig\"" in followed.text


def chromium_rows() -> dict:
    """The catalogue page as headless Chromium shows it after its script refreshed the table."""
    dom = chromium_dom(f"{PROXY}/catalogue/")
    reader = RowReader()
    reader.feed(dom)
    return reader.rows


def test_catalogue_page_in_headless_chromium(stacks):
    # --virtual-time-budget=5000 lets the 2-second refresh replace the table twice.
    assert_prod_row(chromium_rows()[("e2e-prod", "vizconfig")])


def test_config_only_change_previews_as_a_kv_update_and_restarts_nothing(stacks, service_repo):
    _, environments = stacks
    prod = environments["e2e-prod"]
    containers = docker_names("container", "bluegreen-e2e-prod-vizconfig-blue-local")
    before = [container_identity(name) for name in containers]
    with open(service_repo) as handle:
        manifest = yaml.safe_load(handle)
    manifest["config"]["title"] = "Charts, rearranged"
    with open(service_repo, "w") as handle:
        yaml.safe_dump(manifest, handle)
    preview = prod.preview()
    assert preview.change_summary.get("update") == 1, preview.change_summary
    assert not {"create", "replace", "delete"} & set(preview.change_summary)
    start = time.monotonic()
    prod.up()
    _, waited = wait_until(lambda: get_json(stable("e2e-prod"))["config"]["title"] == "Charts, rearranged",
                           10, what="new config served")
    FIGURES["config_change_visible_after_up_s"] = round(waited, 2)
    FIGURES["config_change_up_s"] = round(time.monotonic() - start - waited, 1)
    assert [container_identity(name) for name in containers] == before
    assert get_json(stable("e2e-int"))["config"]["title"] == "Visualization configurations"


def test_a_flip_shows_in_the_catalogue(stacks, service_repo):
    _, environments = stacks
    prod = environments["e2e-prod"]
    prod.update_config(lambda c: c["bluegreen:services"]["vizconfig"].update(
        live="green", green={"version": "2.0.0"}))
    prod.up()
    start = time.monotonic()
    _, waited = wait_until(lambda: catalogue_row("e2e-prod")["live"] == "green", 10,
                           what="catalogue shows green")
    FIGURES["catalogue_refresh_after_flip_s"] = round(waited, 2)
    wait_until(lambda: catalogue_page_rows(PROXY)[("e2e-prod", "vizconfig")]["live"] == "green", 10,
               what="catalogue page shows green")
    FIGURES["catalogue_page_refresh_after_flip_s"] = round(time.monotonic() - start, 2)
    row = catalogue_row("e2e-prod")
    assert row["entry"]["colours"]["green"]["version"] == "2.0.0"
    assert sorted((i["host"], i["colour"]) for i in row["instances"]) == \
        [("host2", "blue"), ("host2", "green"), ("local", "blue"), ("local", "green")]
    assert catalogue_row("e2e-int")["live"] == "blue"
    assert time.monotonic() - start < 10


def test_a_stopped_container_on_host2_leaves_rotation_without_failed_requests(stacks):
    name = "bluegreen-e2e-prod-vizconfig-green-host2-0"
    instance = name.removeprefix("bluegreen-")

    def status() -> str:
        return next(i["status"] for i in catalogue_row("e2e-prod")["instances"] if i["id"] == instance)

    with RequestLoop(stable("e2e-prod")) as loop:
        time.sleep(1)
        stopped_at = time.monotonic()
        subprocess.run(["docker", "-H", HOST2_DOCKER, "stop", "-t", "2", name], check=True,
                       capture_output=True)
        _, waited = wait_until(lambda: status() == "critical", 15, what="catalogue shows critical")
        FIGURES["stop_to_catalogue_critical_s"] = round(time.monotonic() - stopped_at, 2)
        time.sleep(2)
        subprocess.run(["docker", "-H", HOST2_DOCKER, "start", name], check=True, capture_output=True)
        started_at = time.monotonic()
        wait_until(lambda: status() == "passing", 20, what="catalogue shows passing again")
        FIGURES["start_to_catalogue_passing_s"] = round(time.monotonic() - started_at, 2)
        time.sleep(1)
    FIGURES["host_failure_requests"] = len(loop.results)
    FIGURES["host_failure_failed_requests"] = len(loop.failures)
    assert loop.failures == [], loop.failures[:5]
    assert all(colour == "green" for _, _, colour, _ in loop.results)


def image_names(repository: str, host: str | None) -> list[str]:
    out = subprocess.run(["docker", *(["-H", host] if host else []), "image", "ls", "--format",
                          "{{.Repository}}:{{.Tag}}@{{.Digest}}", repository],
                         capture_output=True, text=True, check=True).stdout
    return out.split()


def remove(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bluegreen.delivery", "remove", "vizconfig", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=600)


def test_removing_the_service_with_remove_leaves_nothing_behind(stacks):
    """`./bg remove` from both environments of one platform: refused while the other still runs
    it, then --force from integration (its images stay), then --purge-releases from production:
    nothing of the service is left on either host, in Consul or in the registry."""
    platform, _ = stacks
    registry = f"127.0.0.1:{PORTS['registry']}"
    repositories = [f"{registry}/vizconfig", f"{registry}/vizconfig-db"]
    hosts = (None, HOST2_DOCKER)
    assert all(image_names(r, h) for r in repositories for h in hosts), "nothing to remove"
    refused = remove("--stack", "e2e-env-int")
    assert refused.returncode == 2 and "vizconfig still runs in e2e-prod; --force" in refused.stdout
    forced = remove("--stack", "e2e-env-int", "--force")
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert "its images stay: it still runs in e2e-prod" in forced.stdout
    assert all(image_names(r, h) for r in repositories for h in hosts), "images went too early"
    last = remove("--stack", "e2e-env-prod", "--purge-releases")
    assert last.returncode == 0, last.stdout + last.stderr
    for host in hosts:
        for kind in ("container", "network", "volume"):
            for env in ENVIRONMENTS.values():
                assert docker_names(kind, f"bluegreen-{env}-vizconfig", host=host) == [], (host, kind)
        for repository in repositories:
            assert image_names(repository, host) == [], (host, repository)
    consul = f"http://127.0.0.1:{PORTS['consul']}"
    deployer = consul_session(platform.deployer_token("e2e-prod"))
    assert deployer.get(f"{consul}/v1/catalog/service/vizconfig", timeout=3).json() == []
    wait_until(lambda: requests.get(stable("e2e-prod"), timeout=3).status_code == 404, 10,
               what="the proxy stops serving the service")
    wait_until(lambda: catalogue()["services"] == [], 10, what="an empty catalogue")
    assert catalogue_page_rows(PROXY) == {}
    # Every key, whatever its tree: only the management token may list the root.
    operator = consul_session(platform.management_token())
    keys = operator.get(f"{consul}/v1/kv/bluegreen/", params={"keys": ""}, timeout=3)
    left = [] if keys.status_code == 404 else [k for k in keys.json() if "/vizconfig" in k]
    assert left == [], left
    credentials = platform.outputs()["credentials"]
    catalog = requests.get(f"http://{registry}/v2/_catalog", timeout=3, auth=(
        credentials["registryUsername"], credentials["registryPassword"])).json()["repositories"]
    assert not {"vizconfig", "vizconfig-db"} & set(catalog)


def test_destroy_leaves_nothing_on_either_host(stacks):
    platform, environments = stacks
    for deployment in environments.values():
        deployment.destroy()
    platform.destroy()
    for host in (None, HOST2_DOCKER):
        for kind in ("container", "network", "volume"):
            for prefix in ("bluegreen-e2e-int-", "bluegreen-e2e-prod-", f"bluegreen-{PLATFORM}-"):
                assert docker_names(kind, prefix, host=host) == [], (host, kind, prefix)
