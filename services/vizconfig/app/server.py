"""vizconfig: stores visualization configurations (JSON documents) in the linked database.

GET /                  service, version, colour, environment that served the request, and
                       the service configuration it currently reads from Consul KV
GET /health            200 when the database link answers, else 503 (Consul's check); 503 for
                       the first WARMUP_SECONDS after start (default 0), as a service that
                       loads caches before it takes traffic would
GET /configs           ids of stored configurations
GET|PUT|DELETE /configs/<id>
GET /events            a server-sent event stream: a `tick` event a second naming the colour and
                       version that serve it. After a flip away from this colour it ends at a
                       random moment inside the proxy's drain (see streams.py); with ?hold=1 it
                       ignores flips, and only the proxy's drain bound ends it
Every response carries X-Service-Version and X-Service-Colour.
"""

import base64
import json
import os
import re
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import redis

from store import ConfigStore
from streams import FlipWatch, alias_key, consul_token, watch

IDENTITY = {
    "service": os.environ.get("SERVICE_NAME", "vizconfig"),
    "version": os.environ.get("SERVICE_VERSION", "dev"),
    "colour": os.environ.get("SERVICE_COLOUR", "none"),
    "environment": os.environ.get("SERVICE_ENVIRONMENT", "none"),
}
DOC_PATH = re.compile(r"^/configs/([A-Za-z0-9_.-]{1,64})$")
EVENTS_PATH = re.compile(r"^/events(\?.*)?$")
TICK_S = 1.0
STARTED = time.monotonic()
WARMUP_S = float(os.environ.get("WARMUP_SECONDS", "0"))
FLIPS = FlipWatch(IDENTITY["colour"])


class LiveConfig:
    """The service's configuration, read from its host's Consul agent (cached for a second), so a
    config change reaches running containers without a rebuild or a restart. `token` is the
    service's own ACL token: it reads this prefix and nothing else."""

    def __init__(self, agent: str | None, prefix: str | None, ttl_s: float = 1.0):
        self.agent, self.prefix, self.ttl_s = agent, prefix, ttl_s
        self._lock = threading.Lock()
        self._value, self._read_at = {}, 0.0

    def get(self) -> dict:
        if not self.agent or not self.prefix:
            return {}
        with self._lock:
            if time.monotonic() - self._read_at > self.ttl_s:
                self._value, self._read_at = self._read(), time.monotonic()
            return self._value

    def _read(self) -> dict:
        url = f"{self.agent.rstrip('/')}/v1/kv/{self.prefix}?recurse=true"
        token = consul_token()
        headers = {"X-Consul-Token": token} if token else {}
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                        timeout=1) as response:
                entries = json.load(response)
        except Exception:  # noqa: BLE001 - keep serving the last known configuration
            return self._value
        return {e["Key"][len(self.prefix):]: base64.b64decode(e["Value"] or b"").decode()
                for e in entries if e["Key"] != self.prefix}


def make_store() -> ConfigStore:
    host, _, port = os.environ.get("DB_ADDRESS", "db:6379").partition(":")
    client = redis.Redis(host=host, port=int(port or 6379), socket_timeout=0.5,
                         socket_connect_timeout=0.5)
    return ConfigStore(client, prefix=f"vizconfig:{IDENTITY['environment']}:")


class Handler(BaseHTTPRequestHandler):
    store: ConfigStore = None
    config = LiveConfig(os.environ.get("CONSUL_HTTP_ADDR"), os.environ.get("SERVICE_CONFIG_PREFIX"))
    protocol_version = "HTTP/1.1"

    def log_message(self, *_):  # quiet: the proxy and Consul poll often
        pass

    def _send(self, status: int, body) -> None:
        data = (json.dumps(body) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Service-Version", IDENTITY["version"])
        self.send_header("X-Service-Colour", IDENTITY["colour"])
        self.end_headers()
        self.wfile.write(data)

    def _events(self, hold: bool) -> None:
        stream = FLIPS.opened()
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("X-Accel-Buffering", "no")  # nginx passes each event on at once
        self.send_header("X-Service-Version", IDENTITY["version"])
        self.send_header("X-Service-Colour", IDENTITY["colour"])
        self.send_header("Connection", "close")       # the stream ends when the connection does
        self.end_headers()
        self.close_connection = True
        sequence = 0
        try:
            self.wfile.write(b"retry: 500\n\n")
            while True:
                deadline = None if hold else FLIPS.deadline(stream)
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    return
                event = {"colour": IDENTITY["colour"], "version": IDENTITY["version"], "seq": sequence}
                self.wfile.write(f"id: {sequence}\nevent: tick\ndata: {json.dumps(event)}\n\n".encode())
                self.wfile.flush()
                sequence += 1
                time.sleep(TICK_S if deadline is None else max(0.0, min(TICK_S, deadline - now)))
        except (BrokenPipeError, ConnectionResetError):
            return

    def do_GET(self):
        events = EVENTS_PATH.match(self.path)
        if events:
            return self._events(hold="hold=1" in (events.group(1) or ""))
        if self.path == "/":
            return self._send(200, {**IDENTITY, "config": self.config.get()})
        if self.path == "/health":
            if time.monotonic() - STARTED < WARMUP_S:
                return self._send(503, {"status": "critical", "warming_up": True, **IDENTITY})
            try:
                self.store.ping()
                return self._send(200, {"status": "passing", **IDENTITY})
            except redis.RedisError as error:
                return self._send(503, {"status": "critical", "database": str(error), **IDENTITY})
        if self.path == "/configs":
            return self._send(200, {"ids": self.store.ids(), **IDENTITY})
        match = DOC_PATH.match(self.path)
        if match:
            document = self.store.get(match.group(1))
            if document is None:
                return self._send(404, {"error": "not found"})
            return self._send(200, {"id": match.group(1), "document": document, **IDENTITY})
        return self._send(404, {"error": "not found"})

    def do_PUT(self):
        match = DOC_PATH.match(self.path)
        if not match:
            return self._send(404, {"error": "not found"})
        length = int(self.headers.get("Content-Length") or 0)
        try:
            document = json.loads(self.rfile.read(length) or b"null")
        except ValueError:
            return self._send(400, {"error": "body must be JSON"})
        self.store.put(match.group(1), document)
        return self._send(200, {"id": match.group(1), "stored": True, **IDENTITY})

    def do_DELETE(self):
        match = DOC_PATH.match(self.path)
        if not match:
            return self._send(404, {"error": "not found"})
        return self._send(200, {"deleted": self.store.delete(match.group(1))})


def main():
    Handler.store = make_store()
    agent = os.environ.get("CONSUL_HTTP_ADDR")
    if agent:
        key = alias_key(IDENTITY["environment"], IDENTITY["service"])
        threading.Thread(target=watch, args=(FLIPS, agent, key), daemon=True).start()
    server = ThreadingHTTPServer(("0.0.0.0", int(os.environ.get("PORT", "8000"))), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
