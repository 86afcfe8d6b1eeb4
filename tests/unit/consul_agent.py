"""A stand-in for a Consul agent at the HTTP level, under the platform's one client
(components.consul.api): it answers requests.request from canned answers and records each call."""

from __future__ import annotations

import json
import urllib.parse

from bluegreen.components.consul import api


class Response:
    def __init__(self, status: int, headers: dict, body):
        self.status_code, self.headers, self.body = status, headers, body
        self.text = body if isinstance(body, str) else ("" if body is None else json.dumps(body))

    def json(self):
        return self.body


class FakeAgent:
    """`answers` maps a path prefix (query included, as `path?k=v`) to a list of (status, headers,
    body): each call takes the next, the last one repeats. `calls` are (method, path?query, body)."""

    def __init__(self, answers: dict):
        self.answers, self.calls = answers, []

    def __call__(self, method, url, timeout=None, headers=None, params=None, data=None, json=None):
        path = urllib.parse.urlsplit(url).path
        if params:
            path += "?" + urllib.parse.urlencode(params)
        self.calls.append((method, path, json if json is not None else data))
        for prefix in sorted(self.answers, key=len, reverse=True):
            if path.startswith(prefix):
                answers = self.answers[prefix]
                return Response(*(answers.pop(0) if len(answers) > 1 else answers[0]))
        raise AssertionError(f"no answer for {method} {path}")

    def install(self, monkeypatch) -> FakeAgent:
        monkeypatch.setattr(api.requests, "request", self)
        return self
