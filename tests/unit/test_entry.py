"""What a stack entry and its manifest must agree on, as the stack program checks it before
anything registers (components/stack_inputs.py check_manifests)."""

import textwrap

import pytest

from bluegreen.components.model.config import parse_stack_config
from bluegreen.components.model.manifest import load_manifest
from bluegreen.components.model.validation import ConfigError
from bluegreen.components.stack_inputs import check_manifests

HOSTS = {"local": {"docker": "unix:///var/run/docker.sock", "consul": "http://127.0.0.1:8500",
                   "bridgeAddress": "172.17.0.1"}}


def service_repo(root, name, extra=""):
    """services/<name>/ with a Dockerfile and a service.yaml naming `name`, plus `extra` YAML."""
    folder = root / "services" / name
    folder.mkdir(parents=True)
    (folder / "Dockerfile").write_text("FROM scratch\n")
    (folder / "service.yaml").write_text(textwrap.dedent(f"""\
        name: {name}
        description: {name}
        port: 8000
        """) + textwrap.dedent(extra))
    return f"services/{name}/service.yaml"


def checked(root, entries: dict):
    """check_manifests on a stack of `entries` (service -> extra entry settings)."""
    services = {name: {"manifest": f"services/{name}/service.yaml", "live": "blue",
                       "blue": {"version": "1.0.0"}, **settings}
                for name, settings in entries.items()}
    stack = parse_stack_config("production", {
        "environment": "production", "platformStack": "platform", "hosts": HOSTS,
        "services": services}, str(root))
    check_manifests(stack, {s.name: load_manifest(s.manifest) for s in stack.services})


def test_two_services_with_one_route_are_refused_naming_both(tmp_path):
    service_repo(tmp_path, "billing", "route: pay\n")
    service_repo(tmp_path, "payments", "route: pay\n")
    with pytest.raises(ConfigError) as raised:
        checked(tmp_path, {"billing": {}, "payments": {}})
    error = raised.value
    assert (error.source, error.field) == (str(tmp_path / "services/payments/service.yaml"), "route")
    assert f"'pay' is the route of billing ({tmp_path / 'services/billing/service.yaml'}) too, " \
           "and stacks/Pulumi.production.yaml deploys both" in error.problem
    assert "give payments a route of its own" in error.problem


def test_a_route_that_is_another_services_name_is_refused(tmp_path):
    service_repo(tmp_path, "billing")
    service_repo(tmp_path, "invoices", "route: billing\n")
    with pytest.raises(ConfigError, match="'billing' is the route of billing"):
        checked(tmp_path, {"billing": {}, "invoices": {}})


def test_a_manifest_naming_another_service_is_refused(tmp_path):
    service_repo(tmp_path, "billing")
    (tmp_path / "services/billing/service.yaml").write_text(
        "name: vizconfig\ndescription: x\nport: 8000\n")
    with pytest.raises(ConfigError) as raised:
        checked(tmp_path, {"billing": {}})
    assert raised.value.field == "bluegreen.services.billing"
    assert "names the service 'vizconfig'; a service's identity is its stack entry" in str(raised.value)


def test_a_colour_may_not_override_a_callees_url(tmp_path):
    service_repo(tmp_path, "vizconfig")
    service_repo(tmp_path, "frontend", "calls: [vizconfig]\n")
    with pytest.raises(ConfigError) as raised:
        checked(tmp_path, {"vizconfig": {}, "frontend": {
            "green": {"version": "2.0.0", "env": {"VIZCONFIG_URL": "http://elsewhere/"}}}})
    assert raised.value.source == "stacks/Pulumi.production.yaml"
    assert raised.value.field == "bluegreen.services.frontend.green.env.VIZCONFIG_URL"
    assert "is reserved (the URL of callee vizconfig in every container" in raised.value.problem


@pytest.mark.parametrize("extra, field", [
    ("memory: 999999g\n", "memory"),
    ("memory: 5g\n", "memory"),
    ("dependencies: {db: {image: redis, port: 6379, memory: 8g}}\n", "dependencies.db.memory"),
])
def test_memory_above_the_stacks_maximum_is_refused_with_the_fix(tmp_path, extra, field):
    service_repo(tmp_path, "billing", extra)
    with pytest.raises(ConfigError) as raised:
        checked(tmp_path, {"billing": {}})
    assert (raised.value.source, raised.value.field) == (
        str(tmp_path / "services/billing/service.yaml"), field)
    assert "m is more than the 4096m stacks/Pulumi.production.yaml allows a container of billing; " \
           "ask for less, or raise bluegreen.services.billing.maxMemory there" in raised.value.problem


def test_the_stack_can_raise_a_services_memory_maximum(tmp_path):
    service_repo(tmp_path, "billing", "memory: 6g\n")
    checked(tmp_path, {"billing": {"maxMemory": "8g"}})
    with pytest.raises(ConfigError, match="6144m is more than the 2048m"):
        checked(tmp_path, {"billing": {"maxMemory": "2g"}})
