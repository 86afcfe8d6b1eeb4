"""The one Consul HTTP client of the platform's own containers (the registrator, the bake
watchdog, the delivery metrics exporter): the agent's address and token file from the
environment, as the Consul CLI reads them. Standard library only: the image has no `requests`."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request

from naming import read_token_file

CONSUL = os.environ.get("CONSUL_HTTP_ADDR", "http://127.0.0.1:8500").rstrip("/")
TOKEN_FILE = os.environ.get("CONSUL_HTTP_TOKEN_FILE", "")
ANSWERS = (404, 409)   # no such key; a check-and-set or session check that lost: answers, not failures


def consul(method: str, path: str, body: bytes | None = None, timeout: float = 10.0):
    """(status, headers, parsed JSON or None) of one call to the agent."""
    request = urllib.request.Request(CONSUL + path, data=body, method=method)
    token = read_token_file(TOKEN_FILE)
    if token:
        request.add_header("X-Consul-Token", token)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            text = response.read()
            return response.status, response.headers, json.loads(text) if text else None
    except urllib.error.HTTPError as error:
        if error.code in ANSWERS:
            return error.code, error.headers, None
        raise
