"""frontend: answers with the release that served the request and the one of vizconfig it called.

GET /        service, version, colour, environment, and `vizconfig`: {colour, version} from a call
             to VIZCONFIG_URL (vizconfig's stable URI at the proxy). An incoming
             X-Bluegreen-Preview header is passed on, so a preview request reaches vizconfig's
             offline colour. When the call fails, `vizconfig` holds {"error": ...} and the answer
             is 502.
GET /health  200 (Consul's check; it does not depend on vizconfig)
Every response carries X-Service-Version and X-Service-Colour. Stdlib only.
"""

import json
import os
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

IDENTITY = {
    "service": os.environ.get("SERVICE_NAME", "frontend"),
    "version": os.environ.get("SERVICE_VERSION", "dev"),
    "colour": os.environ.get("SERVICE_COLOUR", "none"),
    "environment": os.environ.get("SERVICE_ENVIRONMENT", "none"),
}
PREVIEW_HEADER = "X-Bluegreen-Preview"
CALL_TIMEOUT_S = 3


def call_vizconfig(url: str | None, preview: str | None, opener=urllib.request.urlopen) -> dict:
    """{colour, version} of the vizconfig that answered, or {"error": ...}."""
    if not url:
        return {"error": "VIZCONFIG_URL is not set"}
    request = urllib.request.Request(url, headers={PREVIEW_HEADER: preview} if preview else {})
    try:
        with opener(request, timeout=CALL_TIMEOUT_S) as response:
            body = json.load(response)
    except Exception as error:  # noqa: BLE001 - reported in the answer, never fatal
        return {"error": f"{type(error).__name__}: {error}"}
    return {"colour": body.get("colour"), "version": body.get("version")}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    opener = staticmethod(urllib.request.urlopen)

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

    def do_GET(self):
        if self.path == "/health":
            return self._send(200, {"status": "passing", **IDENTITY})
        if self.path == "/":
            called = call_vizconfig(os.environ.get("VIZCONFIG_URL"), self.headers.get(PREVIEW_HEADER),
                                    self.opener)
            return self._send(502 if "error" in called else 200, {**IDENTITY, "vizconfig": called})
        return self._send(404, {"error": "not found"})


def main():
    server = ThreadingHTTPServer(("0.0.0.0", int(os.environ.get("PORT", "8000"))), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
