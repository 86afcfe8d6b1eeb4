"""An environment's routes as Consul records them, and the check-and-set claim of one route. The
program reads and claims before anything registers (the rules: components.model.routes); the
Service's `-route-claim` key then keeps the claim, and deleting it frees the route."""

from __future__ import annotations

from bluegreen.components.consul import api as consul_api
from bluegreen.components.model.routes import RouteBook, route_book
from bluegreen.components.naming import route_claim_key, routes_prefix

CLAIM_TRIES = 3   # a claim deleted between our read and our write is read again, a few times


def read_route_book(address: str, environment: str, token: str) -> RouteBook:
    """Every route and claim of `environment`, in one request (ConsulError when Consul refuses)."""
    return route_book(environment, consul_api.kv_tree(address, routes_prefix(environment), token))


def claim_route(address: str, environment: str, service: str, route: str, token: str) -> str | None:
    """Claims `route` for `service` unless another service holds it; returns that service (None:
    the route is `service`'s). A write only if the claim is still as read (check-and-set), so of
    two updates claiming one route at the same time exactly one gets it."""
    key = route_claim_key(environment, route)
    for _ in range(CLAIM_TRIES):
        holder, index = consul_api.kv_get_indexed(address, key, token)
        if holder and holder.strip():
            return None if holder.strip() == service else holder.strip()
        if consul_api.kv_cas(address, key, service, index, token):
            return None
    raise consul_api.ConsulError(f"the claim {key} changed at each of {CLAIM_TRIES} tries to take "
                                 "it; nothing was changed: run the update again")
