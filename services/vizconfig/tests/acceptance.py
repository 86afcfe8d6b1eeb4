"""Acceptance tests against a deployed vizconfig (stdlib only): run by the delivery pipeline in a
throwaway container of the service's own image (as /app/tests/acceptance.py) with BASE_URL set to
an environment's stable URI as containers reach it; by hand, e.g.

    BASE_URL=http://127.0.0.1:18080/local/vizconfig/ python3 tests/acceptance.py

EXPECTED_VERSION, when set, is the version that must answer. Exits non-zero on the first failure.
"""

import json
import os
import sys
import time
import urllib.error
import urllib.request

TIMEOUT_S = 5


def call(method: str, path: str, body=None) -> tuple[int, dict]:
    url = os.environ["BASE_URL"].rstrip("/") + path
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:  # an answer, just not a 2xx one
        try:
            return error.code, json.load(error)
        except ValueError:
            return error.code, {}


def check(condition: bool, message: str) -> None:
    if not condition:
        print(f"FAIL: {message}", file=sys.stderr)
        sys.exit(1)
    print(f"ok: {message}")


def main() -> None:
    if not os.environ.get("BASE_URL"):
        sys.exit("BASE_URL is not set (the stable URI of the environment under test)")
    status, identity = call("GET", "/")
    check(status == 200 and identity.get("service") == "vizconfig", "GET / names the service")
    expected = os.environ.get("EXPECTED_VERSION")
    if expected:
        check(identity.get("version") == expected,
              f"GET / answers version {expected} (got {identity.get('version')})")
    doc_id = f"acceptance-{int(time.time() * 1000)}"
    document = {"type": "line", "series": [1, 2, 3], "written_by": identity.get("version")}
    status, stored = call("PUT", f"/configs/{doc_id}", document)
    check(status == 200 and stored.get("stored") is True, f"PUT /configs/{doc_id} stores it")
    status, read = call("GET", f"/configs/{doc_id}")
    check(status == 200 and read.get("document") == document, f"GET /configs/{doc_id} reads it back")
    status, listing = call("GET", "/configs")
    check(doc_id in listing.get("ids", []), "GET /configs lists it")
    status, deleted = call("DELETE", f"/configs/{doc_id}")
    check(deleted.get("deleted") is True, f"DELETE /configs/{doc_id} removes it")


if __name__ == "__main__":
    main()
