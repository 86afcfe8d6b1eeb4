"""Routes are unique per environment, across every stack that deploys to it: who holds which
route as Consul records it, and the refusal an update gets for a route another service holds.
The program reads the records (components.consul.route_claims) and checks them here before
anything registers; two services on one route would make nginx refuse the whole routes file."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from bluegreen.components.model.config import stack_file
from bluegreen.components.model.validation import ConfigError
from bluegreen.components.naming import ROUTE_CLAIMS, route_claim_key, routes_prefix, stable_path


@dataclass(frozen=True)
class RouteBook:
    """One environment's routes: each service's route key and each route's claim."""

    routes: Mapping[str, str] = field(default_factory=dict)   # service -> the route it is served at
    claims: Mapping[str, str] = field(default_factory=dict)   # route -> the service that claimed it


@dataclass(frozen=True)
class RouteUse:
    """A route an update deploys: which service, from which manifest and stack file."""

    environment: str
    service: str
    route: str
    manifest: str   # the manifest whose `route` it is
    source: str     # the stack file that deploys the service


def route_book(environment: str, tree: Mapping[str, str]) -> RouteBook:
    """The book of `environment` from its KV tree (every key under naming.routes_prefix)."""
    prefix = routes_prefix(environment)
    routes: dict[str, str] = {}
    claims: dict[str, str] = {}
    for key, value in tree.items():
        parts = key[len(prefix):].split("/") if key.startswith(prefix) else []
        if len(parts) == 2 and parts[0] == ROUTE_CLAIMS and parts[1] and value.strip():
            claims[parts[1]] = value.strip()
        elif len(parts) == 1 and parts[0] and parts[0] != ROUTE_CLAIMS:
            routes[parts[0]] = value.strip()
    return RouteBook(routes, claims)


def route_holder(book: RouteBook, service: str, route: str) -> str | None:
    """The other service holding `route` (None: it is free, or `service`'s own): its claimant,
    else a service whose route key names it (one deployed before routes were claimed)."""
    claimant = book.claims.get(route)
    if claimant:
        return None if claimant == service else claimant
    return next((other for other, taken in sorted(book.routes.items())
                 if taken == route and other != service), None)


def route_taken(use: RouteUse, holder: str, holder_stack: str | None,
                book: RouteBook) -> ConfigError:
    """The refusal of `use`, whose route `holder` holds (deployed by the stack `holder_stack`,
    None when no stack file of this checkout deploys it)."""
    where = stack_file(holder_stack) if holder_stack else "no stack file of this checkout deploys it"
    remove = f"./bg remove {holder} --stack {holder_stack}" if holder_stack else f"./bg remove {holder}"
    stale = "" if holder in book.routes else (
        f"; {holder} claimed it but has no route key yet: it is being deployed now, or its update "
        f"stopped early (then delete {route_claim_key(use.environment, use.route)} with the "
        f"environment's deployer token, or deploy {holder} again)")
    return ConfigError(use.manifest, "route", (
        f"route {stable_path(use.environment, use.route)} is taken by service {holder} in "
        f"environment {use.environment} ({where}), and {use.source} deploys {use.service} there: "
        f"routes are unique per environment; choose another route for {use.service} "
        f"(or remove {holder} first: `{remove}` frees it){stale}"))
