"""Routes unique per environment, across its stacks: the book of routes and claims Consul holds
(components.model.routes), the check-and-set claim (components.consul.route_claims) and the
program's refusal before anything registers."""

from __future__ import annotations

import pulumi
import pytest
from hypothesis import given, settings, strategies as st

from unit_harness import CONSUL_KEY, ProgramFailed, run_program, stack_config

from bluegreen.components.consul import api as consul_api
from bluegreen.components.consul import route_claims
from bluegreen.components.model.config import stack_deploying
from bluegreen.components.model.routes import RouteBook, RouteUse, route_book, route_holder, route_taken
from bluegreen.components.naming import route_claim_key, route_key, routes_prefix

ENV = "production"
USE = RouteUse(ENV, "beta", "alpha", "/repos/beta/service.yaml", "stacks/Pulumi.production.beta.yaml")


class FakeKV:
    """Consul KV as the claim uses it: reads with ModifyIndex, check-and-set writes."""

    def __init__(self, values: dict[str, str] | None = None):
        self.values = dict(values or {})
        self.indexes = {key: 1 for key in self.values}
        self.clock = 1
        self.before_write = lambda: None   # what another writer does between a read and a write

    def get_indexed(self, _address, key, _token):
        return self.values.get(key), self.indexes.get(key, 0)

    def cas(self, _address, key, value, index, _token):
        self.before_write()
        if self.indexes.get(key, 0) != index:
            return False
        self.put(key, value)
        return True

    def put(self, key, value):
        self.clock += 1
        self.values[key], self.indexes[key] = value, self.clock

    def delete(self, key):
        self.values.pop(key, None)
        self.indexes.pop(key, None)

    def tree(self, _address, prefix, _token):
        return {key: value for key, value in self.values.items() if key.startswith(prefix)}

    def install(self, monkeypatch) -> "FakeKV":
        monkeypatch.setattr(consul_api, "kv_get_indexed", self.get_indexed)
        monkeypatch.setattr(consul_api, "kv_cas", self.cas)
        monkeypatch.setattr(consul_api, "kv_tree", self.tree)
        return self


# --- the book and who holds a route --------------------------------------------------------------

def test_the_book_separates_routes_from_claims_and_other_environments():
    tree = {route_key(ENV, "alpha"): "alpha\n", route_key(ENV, "beta"): "shop",
            route_claim_key(ENV, "alpha"): "alpha", route_claim_key(ENV, "shop"): "",
            route_key("production-eu", "gamma"): "alpha", f"{routes_prefix(ENV)}_claims/": ""}
    assert route_book(ENV, tree) == RouteBook({"alpha": "alpha", "beta": "shop"}, {"alpha": "alpha"})


def test_a_claim_is_the_holder_and_its_own_service_passes():
    book = RouteBook({"alpha": "alpha"}, {"alpha": "alpha"})
    assert route_holder(book, "beta", "alpha") == "alpha"
    assert route_holder(book, "alpha", "alpha") is None
    assert route_holder(book, "beta", "beta") is None


def test_a_route_key_without_claim_holds_its_route_for_services_deployed_before_claims():
    assert route_holder(RouteBook({"alpha": "shop"}, {}), "beta", "shop") == "alpha"
    # The claim decides where there is one.
    assert route_holder(RouteBook({"alpha": "shop"}, {"shop": "beta"}), "beta", "shop") is None


def test_a_route_freed_by_removing_its_service_is_free():
    assert route_holder(RouteBook({}, {}), "beta", "alpha") is None


@given(st.dictionaries(st.sampled_from("abcd"), st.sampled_from("wxyz")),
       st.dictionaries(st.sampled_from("wxyz"), st.sampled_from("abcd")),
       st.sampled_from("abcd"), st.sampled_from("wxyz"))
def test_the_holder_is_another_service_that_holds_the_route(routes, claims, service, route):
    holder = route_holder(RouteBook(routes, claims), service, route)
    assert holder != service
    if holder is not None:
        assert claims.get(route) == holder or (route not in claims and routes[holder] == route)


# --- the refusal ---------------------------------------------------------------------------------

def test_the_refusal_names_the_manifest_field_the_holder_its_stack_file_and_the_fix():
    error = route_taken(USE, "alpha", "production.alpha", RouteBook({"alpha": "alpha"}, {"alpha": "alpha"}))
    assert str(error) == (
        "/repos/beta/service.yaml: route: route /production/alpha/ is taken by service alpha in "
        "environment production (stacks/Pulumi.production.alpha.yaml), and "
        "stacks/Pulumi.production.beta.yaml deploys beta there: routes are unique per environment; "
        "choose another route for beta (or remove alpha first: `./bg remove alpha --stack "
        "production.alpha` frees it)")


def test_a_claim_without_route_key_is_named_with_how_to_free_it():
    message = str(route_taken(USE, "alpha", None, RouteBook({}, {"alpha": "alpha"})))
    assert "(no stack file of this checkout deploys it)" in message
    assert f"delete {route_claim_key(ENV, 'alpha')} with the environment's deployer token" in message


def test_the_holders_stack_is_the_environment_stack_or_the_service_stack_that_lists_it(tmp_path):
    stacks = tmp_path / "stacks"
    stacks.mkdir()
    (stacks / "Pulumi.production.yaml").write_text(
        "config:\n  bluegreen:environment: production\n  bluegreen:services:\n    gamma: {}\n")
    (stacks / "Pulumi.production.alpha.yaml").write_text(
        "config:\n  bluegreen:environmentStack: production\n  bluegreen:services:\n    alpha: {}\n")
    assert stack_deploying("production", "alpha", str(tmp_path)) == "production.alpha"
    assert stack_deploying("production", "gamma", str(tmp_path)) == "production"
    assert stack_deploying("production", "delta", str(tmp_path)) is None
    assert stack_deploying("staging", "alpha", str(tmp_path)) is None


# --- the claim: check-and-set --------------------------------------------------------------------

def test_a_free_route_is_claimed_and_an_own_claim_is_kept(monkeypatch):
    kv = FakeKV().install(monkeypatch)
    assert route_claims.claim_route("http://consul", ENV, "alpha", "alpha", "t") is None
    assert kv.values == {route_claim_key(ENV, "alpha"): "alpha"}
    index = kv.indexes[route_claim_key(ENV, "alpha")]
    assert route_claims.claim_route("http://consul", ENV, "alpha", "alpha", "t") is None
    assert kv.indexes[route_claim_key(ENV, "alpha")] == index   # not written again


def test_a_claim_held_by_another_service_is_not_taken(monkeypatch):
    kv = FakeKV({route_claim_key(ENV, "alpha"): "alpha"}).install(monkeypatch)
    assert route_claims.claim_route("http://consul", ENV, "beta", "alpha", "t") == "alpha"
    assert kv.values == {route_claim_key(ENV, "alpha"): "alpha"}


def test_of_two_updates_claiming_one_route_at_once_the_second_gets_the_first_as_holder(monkeypatch):
    kv = FakeKV().install(monkeypatch)
    key = route_claim_key(ENV, "alpha")
    # alpha's update writes its claim between beta's read and beta's write.
    kv.before_write = lambda: (kv.put(key, "alpha"), setattr(kv, "before_write", lambda: None))
    assert route_claims.claim_route("http://consul", ENV, "beta", "alpha", "t") == "alpha"
    assert kv.values == {key: "alpha"}


def test_a_claim_that_keeps_changing_is_an_error_after_a_few_tries(monkeypatch):
    # Each read finds it free, and each write finds it written (then deleted) meanwhile.
    monkeypatch.setattr(consul_api, "kv_get_indexed", lambda *_: (None, 0))
    monkeypatch.setattr(consul_api, "kv_cas", lambda *_: False)
    with pytest.raises(consul_api.ConsulError, match="run the update again"):
        route_claims.claim_route("http://consul", ENV, "beta", "alpha", "t")


def deploy_batch(kv: FakeKV, batch: list[tuple[str, str]], deployed: dict[str, str]) -> dict[str, str]:
    """Stacks updating at the same time, in the worst order: every program reads, then every
    program claims, then the resources of the ones that got their route are written (the route
    key and the claim key; a service that changed route frees its old claim). Returns service ->
    the holder that refused it."""
    books = {service: route_claims.read_route_book("http://consul", ENV, "t") for service, _ in batch}
    refused = {service: holder for service, route in batch
               if (holder := route_holder(books[service], service, route)
                   or route_claims.claim_route("http://consul", ENV, service, route, "t"))}
    for service, route in batch:
        if service in refused:
            continue
        if deployed.get(service) not in (None, route):
            kv.delete(route_claim_key(ENV, deployed[service]))
        kv.put(route_claim_key(ENV, route), service)
        kv.put(route_key(ENV, service), route)
        deployed[service] = route
    return refused


services = st.sampled_from(["alpha", "beta", "gamma", "delta"])
routes = st.sampled_from(["alpha", "beta", "shop", "api"])
operations = st.lists(st.one_of(
    st.tuples(st.just("deploy"), st.lists(st.tuples(services, routes), min_size=1, max_size=3,
                                           unique_by=lambda pair: pair[0])),
    st.tuples(st.just("remove"), services)), max_size=12)


@settings(max_examples=200, deadline=None)
@given(operations)
def test_routes_stay_unique_per_environment_whatever_stacks_deploy_at_once(steps):
    with pytest.MonkeyPatch.context() as monkeypatch:
        kv = FakeKV().install(monkeypatch)
        deployed: dict[str, str] = {}
        for kind, argument in steps:
            if kind == "remove":
                if argument in deployed:   # the stack's `up` deletes both keys
                    kv.delete(route_claim_key(ENV, deployed.pop(argument)))
                    kv.delete(route_key(ENV, argument))
                continue
            before = dict(deployed)
            refused = deploy_batch(kv, argument, deployed)
            for service, holder in refused.items():
                route = dict(argument)[service]
                # Refused only for a route another service held when it read, or took meanwhile;
                # never for its own route.
                assert holder != service and route in (before.get(holder), deployed.get(holder))
                assert before.get(service) != route
            book = route_book(ENV, kv.tree("", routes_prefix(ENV), ""))
            assert len(set(book.routes.values())) == len(book.routes), book
            assert book.claims == {route: service for service, route in book.routes.items()}


# --- the program: refused before anything registers ---------------------------------------------

def test_a_route_held_in_the_environment_by_another_stack_registers_nothing():
    config = stack_config("local")
    service = next(iter(config["services"]))
    with pytest.raises(ProgramFailed) as raised:
        run_program(config, stack="local",
                    routes=RouteBook({"other": service}, {service: "other"}))
    assert isinstance(raised.value.error, pulumi.RunError)
    message = str(raised.value)
    assert f"service.yaml: route: route /local/{service}/ is taken by service other in environment local" in message
    assert "stacks/Pulumi.local.yaml deploys" in message and "so nothing was changed" in message
    # Only the read of the stack's own last outputs (the deployer token): nothing that changes.
    assert {r.type for r in raised.value.resources} <= {"pulumi:pulumi:StackReference"}


def test_a_service_keeps_its_claim_in_a_key_of_its_own():
    config = stack_config("local")
    service = next(iter(config["services"]))
    resources = run_program(config, stack="local",
                            routes=RouteBook({service: service}, {service: service}))
    claims = [r for r in resources if r.type == CONSUL_KEY and r.name.endswith("-route-claim")]
    assert {(r.inputs["key"], r.inputs["value"]) for r in claims} >= {
        (route_claim_key("local", service), service)}


def test_a_route_another_update_claims_first_registers_nothing():
    """Both programs read the route free; the other update's claim lands first."""
    config = stack_config("local")
    service = next(iter(config["services"]))
    with pytest.raises(ProgramFailed) as raised:
        run_program(config, stack="local", taken={service: "other"})
    assert f"route /local/{service}/ is taken by service other" in str(raised.value)
    assert "has no route key yet: it is being deployed now" in str(raised.value)
    assert {r.type for r in raised.value.resources} <= {"pulumi:pulumi:StackReference"}
