"""Proof that traffic moved: the proxy names the route and colour of every answer
(X-Bluegreen-Route, X-Bluegreen-Colour), so a URI proves which colour serves it.

AliasKey writes an alias like ConsulKey does, with every proxy on both sides of the write (each
renders from Consul on its own): before it, the colour it moves to must answer on the preview URI
at each (so the flip never lands on an upstream a proxy has not rendered yet); after it, the stable
URI must answer from that colour at each, or the update fails naming the proxies that do not and
the write is undone. The measured time (alias write -> proxy serving) is its
output. The offline colour's gate waits the same way for the preview URI."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Mapping

import pulumi
import requests
from pulumi import dynamic

from bluegreen.components.consul import api as consul_api
from bluegreen.components.consul import hooks
from bluegreen.components.consul.key import _ConsulKeyProvider
from bluegreen.components.consul.legacy import with_legacy_type
from bluegreen.components.model.hooks import FLIP, Hooks, flip_payload
from bluegreen.components.naming import CONSUL_KEY_TYPE, PROXY_COLOUR_HEADER, PROXY_ROUTE_HEADER

ROUTE_HEADER = PROXY_ROUTE_HEADER
COLOUR_HEADER = PROXY_COLOUR_HEADER
PROOF_TIMEOUT_S = 15.0
POLL_INTERVAL_S = 0.005        # the proof's resolution: it measures the flip
READY_POLL_INTERVAL_S = 0.05
REQUEST_TIMEOUT_S = 2.0
PROXY_ERRORS = (502, 503, 504)   # nginx found no instance that answers


def route_problem(status: int, headers: Mapping[str, str], route: str, colour: str) -> str | None:
    """Why one answer does not prove that the proxy serves `route` from `colour` (None: it does)."""
    served_route, served_colour = headers.get(ROUTE_HEADER), headers.get(COLOUR_HEADER)
    if served_route != route:
        return f"answers {status} for route {served_route or '(no route header)'}, not {route}"
    if served_colour != colour:
        return f"still serves {served_colour or '(no colour header)'} (answers {status})"
    if status in PROXY_ERRORS:
        return f"routes to {colour} but answers {status}: no {colour} instance answers there"
    return None


def wait_for_route(url: str, route: str, colour: str, timeout_s: float,
                   started: float | None = None, interval_s: float = POLL_INTERVAL_S) -> float:
    """Polls `url` (a fresh connection each time, every `interval_s`) until an answer proves
    `colour`; returns the seconds from `started` (time.monotonic(), default now) to that answer,
    or raises naming the last answer."""
    started = time.monotonic() if started is None else started
    deadline = time.monotonic() + timeout_s
    last = "no answer yet"
    while True:
        try:
            with requests.get(url, timeout=REQUEST_TIMEOUT_S, headers={"Connection": "close"},
                              allow_redirects=False, stream=True) as response:
                problem = route_problem(response.status_code, response.headers, route, colour)
            if problem is None:
                return time.monotonic() - started
            last = problem
        except requests.RequestException as error:
            last = f"does not answer ({type(error).__name__})"
        if time.monotonic() >= deadline:
            raise RuntimeError(f"the proxy at {url} {last} after {timeout_s:.0f}s")
        time.sleep(interval_s)


def wait_on_every(urls: Mapping[str, str], route: str, colour: str, timeout_s: float,
                  started: float | None = None,
                  interval_s: float = POLL_INTERVAL_S) -> dict[str, float]:
    """wait_for_route on every proxy at once (`urls`: proxy name -> URL): each one's seconds
    from `started`, or raises naming every proxy that did not prove `colour` and why."""
    started = time.monotonic() if started is None else started
    with ThreadPoolExecutor(max_workers=max(1, len(urls))) as pool:
        futures = {name: pool.submit(wait_for_route, url, route, colour, timeout_s, started, interval_s)
                   for name, url in urls.items()}
    proven_s: dict[str, float] = {}
    problems: list[str] = []
    for name, future in futures.items():
        try:
            proven_s[name] = future.result()
        except RuntimeError as error:
            problems.append(f"{error} (proxy on {name})" if len(urls) > 1 else str(error))
    if problems:
        raise RuntimeError("; ".join(problems))
    return proven_s


def proxy_urls(props: Mapping[str, Any], preview: bool = False) -> dict[str, str]:
    """The probe URL at each proxy (`urls` / `preview_urls`); an alias written before there
    were several proxies has one (`url` / `preview_url`)."""
    many, one = ("preview_urls", "preview_url") if preview else ("urls", "url")
    return dict(props.get(many) or ({"proxy": props[one]} if props.get(one) else {}))


class _AliasKeyProvider(_ConsulKeyProvider):
    """ConsulKey's create and update, each preceded by the readiness check and followed by the
    proof; delete and diff are ConsulKey's. Without the proof the write is undone, so the alias
    keeps matching the stack's state."""

    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
        payload = asked(props)
        ready_to_move(props)
        started = time.monotonic()
        super().create(props)
        try:
            outs = proven(props, started)
        except RuntimeError as error:
            super().delete(props["key"], props)
            raise RuntimeError(f"{error}, so the alias was removed again") from None
        told(props, payload)
        return dynamic.CreateResult(id_=props["key"], outs=outs)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.UpdateResult:
        payload = asked(news)
        ready_to_move(news)
        started = time.monotonic()
        super().update(_id, olds, news)
        try:
            outs = proven(news, started)
        except RuntimeError as error:
            if olds.get("key") == news.get("key"):
                super().update(_id, news, olds)
            raise RuntimeError(f"{error}, so the alias was put back to {olds.get('value')}") from None
        told(news, payload)
        return dynamic.UpdateResult(outs=outs)


def asked(props: Mapping[str, Any]) -> dict | None:
    """The flip's payload once its hooks let it go (model.hooks), None when this write moves no
    traffic (a new alias, or one that names the colour already) or nobody is to hear of it;
    raises, before anything is written, on a veto or a held flip that timed out."""
    if not props.get("hooks"):
        return None
    current = consul_api.kv_get(props["address"], props["key"], props["token"])
    if current is None or current.strip() == props["value"]:
        return None
    flip: Mapping[str, Any] = props.get("flip") or {}
    fields: dict[str, Any] = {k: flip.get(k) for k in FLIP_FIELDS}   # as the program wrote them
    payload = flip_payload(event=FLIP, before=current.strip(), after=props["value"], **fields)
    try:
        hooks.before_flip(Hooks.from_record(props["hooks"]), payload, props["address"],
                          props["token"], _quiet)
    except hooks.FlipVetoed as error:
        raise RuntimeError(f"alias {props['key']} was not moved: {error}") from None
    return payload


FLIP_FIELDS = ("service", "environment", "version", "digest", "actor", "stack")


def told(props: Mapping[str, Any], payload: dict | None) -> None:
    """The after-flip hook and the notification of a flip that landed (never raises)."""
    if payload is not None:
        hooks.after_flip(Hooks.from_record(props["hooks"]), payload, _quiet)


def _quiet(_message: str) -> None:
    """What the hooks say goes nowhere here: a provider has no terminal; errors are raised."""


def ready_to_move(props: Mapping[str, Any]) -> None:
    """Raises, before anything is written, unless the colour the alias moves to answers on the
    preview URI (the route to the offline colour). Nothing to check when the alias is new or names
    that colour already (as after a rollback that wrote it)."""
    current = consul_api.kv_get(props["address"], props["key"], props["token"])
    urls = proxy_urls(props, preview=True)
    if current is None or current.strip() == props["value"] or not urls:
        return
    try:
        wait_on_every(urls, props["preview_route"], props["value"], float(props["timeout_s"]),
                      interval_s=READY_POLL_INTERVAL_S)
    except RuntimeError as error:
        raise RuntimeError(f"alias {props['key']} was not moved to {props['value']}: {error}; "
                           f"traffic stays on {current.strip()}") from None


def proven(props: Mapping[str, Any], written: float) -> dict[str, Any]:
    """The alias's outputs once every proxy serves its colour: `proofs` (each proxy's seconds
    since `written`, time.monotonic() just before the write) and `flip_s` (the slowest); raises
    naming each proxy that serves something else."""
    try:
        proofs = wait_on_every(proxy_urls(props), props["route"], props["value"],
                               float(props["timeout_s"]), written)
    except RuntimeError as error:
        raise RuntimeError(f"alias {props['key']} was written ({props['value']}), but {error}: "
                           "traffic did not move (see the proxy's log: consul-template, "
                           "apply-config)") from None
    return {**props, "flip_s": round(max(proofs.values()), 3),
            "proofs": {name: round(seconds, 3) for name, seconds in proofs.items()}}


class AliasKey(dynamic.Resource, module=CONSUL_KEY_TYPE[0], name=CONSUL_KEY_TYPE[1]):
    """An alias written to Consul KV, checked and proven at every proxy: each of `preview_urls`
    (proxy name -> URL) must answer from `value` (the colour) under `preview_route` before the
    write, each of `urls` under `route` after it, each within `timeout_s`; `proofs` is write ->
    serving per proxy, `flip_s` the slowest; `token` (a secret) writes it; `hooks`
    (model.hooks.Hooks.as_record) are asked and told around a flip described by `flip`. A Consul
    key to everything else (its
    type, policies, an alias written by an earlier ConsulKey)."""

    address: pulumi.Output[str]
    key: pulumi.Output[str]
    value: pulumi.Output[str]
    flip_s: pulumi.Output[float]
    proofs: pulumi.Output[dict]

    def __init__(self, name: str, *, address: pulumi.Input[str], key: pulumi.Input[str],
                 value: pulumi.Input[str], urls: pulumi.Input[dict], route: str,
                 preview_urls: pulumi.Input[dict], preview_route: str,
                 token: pulumi.Input[str], timeout_s: float = PROOF_TIMEOUT_S,
                 hooks: dict | None = None, flip: dict | None = None,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__(_AliasKeyProvider(), name, {
            "address": address, "key": key, "value": value, "urls": urls, "route": route,
            "preview_urls": preview_urls, "preview_route": preview_route, "timeout_s": timeout_s,
            "token": pulumi.Output.secret(token), "flip_s": None, "proofs": None, "hooks": hooks,
            "flip": flip},
            pulumi.ResourceOptions.merge(with_legacy_type(opts), pulumi.ResourceOptions(
                additional_secret_outputs=["token"])))

