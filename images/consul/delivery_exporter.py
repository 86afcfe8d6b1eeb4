#!/usr/bin/env python3
"""The delivery metrics exporter: keeps every service's delivery metrics (scoreboard.py: deployments
per day, lead time, change failure rate, time to restore) current from the release histories in
Consul KV, for the catalogue and for Prometheus.

It waits on the histories (naming.history_root) with a Consul blocking query, which returns when any
history entry changes (a deploy, a flip, a roll-back) and at the latest after WAIT, so that a
deployment leaving the window counts too. Each time it computes the figures of every environment's
services and writes those that changed to naming.delivery_key (the catalogue renders them), deletes
those of services whose history is gone, and serves them all in Prometheus's text format on
DELIVERY_METRICS_LISTEN (host:port, /metrics).

Environment: CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN_FILE (its token: lists the histories, writes the
delivery keys), DELIVERY_METRICS_LISTEN. It talks to Consul through the platform's client (components.consul.api)."""

from __future__ import annotations

import datetime
import http.server
import json
import os
import threading
import time

from bluegreen.components.consul import api
from bluegreen.components.model.scoreboard import delivery_metrics, exposition
from bluegreen.components.naming import delivery_key, delivery_prefix, history_root

LISTEN = os.environ.get("DELIVERY_METRICS_LISTEN", "")
WAIT_S = 60           # a blocking query returns at the latest after this: the window slides
EXPOSITION = {"text": exposition({})}   # what /metrics serves, replaced whole on each pass
AGENT = api.LocalAgent.from_environment()


def histories(entries: dict[str, api.KVEntry]) -> dict[tuple[str, str], dict[str, dict]]:
    """(environment, service) -> release -> entry, from a recursive read of the history root."""
    found: dict[tuple[str, str], dict[str, dict]] = {}
    for key, item in entries.items():
        parts = key[len(history_root()):].split("/")
        if len(parts) != 3 or not all(parts):
            continue
        try:
            entry = json.loads(item.value or "null")
        except ValueError:
            continue
        if isinstance(entry, dict):
            found.setdefault((parts[0], parts[1]), {})[parts[2]] = entry
    return found


def changes(figures: dict, written: dict) -> tuple[dict[str, str], list[str]]:
    """(key -> JSON to write, keys to delete): what differs from what was written last."""
    wanted = {delivery_key(env, service): json.dumps(values, sort_keys=True)
              for (env, service), values in figures.items()}
    return ({k: v for k, v in wanted.items() if written.get(k) != v},
            [k for k in written if k not in wanted])


def publish(figures: dict, written: dict) -> None:
    """Writes the changed figures and deletes the gone ones; `written` follows what landed."""
    puts, deletes = changes(figures, written)
    for key, value in puts.items():
        api.kv_put(AGENT.address, key, value, AGENT.token)
        written[key] = value
    for key in deletes:
        api.kv_delete(AGENT.address, key, AGENT.token)
        written.pop(key, None)


def current() -> dict:
    """What the delivery keys hold now (so a restart does not rewrite them all)."""
    return {key: value for key, value in api.kv_tree(AGENT.address, delivery_prefix(), AGENT.token).items()
            if key != delivery_prefix()}


def watch() -> None:
    """Forever: wait for a history change (or WAIT), compute, publish."""
    index, written = 0, None
    while True:
        try:
            written = current() if written is None else written
            entries, new_index = api.kv_entries(AGENT.address, history_root(), AGENT.token, index, WAIT_S)
            index = new_index if new_index >= index else 0   # a reset Consul: start over
            now = datetime.datetime.now(datetime.timezone.utc)
            figures = {key: delivery_metrics(history, now) for key, history in histories(entries).items()}
            EXPOSITION["text"] = exposition(figures)
            publish(figures, written)
        except Exception as error:  # noqa: BLE001 - keep publishing through agent restarts
            print(f"delivery-exporter: {type(error).__name__}: {error}; retrying in 5s", flush=True)
            index, written = 0, None
            time.sleep(5)
        time.sleep(1)   # bounds the pass rate whatever Consul answers


class Metrics(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's name
        if self.path.split("?")[0] != "/metrics":
            self.send_error(404)
            return
        body = EXPOSITION["text"].encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_):   # a scrape every few seconds is no news
        pass


def main() -> None:
    if LISTEN:
        host, port = LISTEN.rsplit(":", 1)
        server = http.server.ThreadingHTTPServer((host, int(port)), Metrics)
        threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"delivery-exporter: watching {AGENT.address}/v1/kv/{history_root()}; "
          f"/metrics on {LISTEN or 'nothing'}", flush=True)
    watch()


if __name__ == "__main__":
    main()
