"""The service's own tests: run inside the image, in isolation (no vizconfig needed)."""

import io
import json
import sys
import threading
import unittest
import urllib.request
from http.server import ThreadingHTTPServer

sys.path.insert(0, "/app")
sys.path.insert(0, __file__.rsplit("/tests/", 1)[0] + "/app")

import server  # noqa: E402


class FakeResponse(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *_):
        self.close()


class Recorder:
    """Stands in for urlopen: records the request, answers like vizconfig."""

    def __init__(self, fail=False):
        self.requests, self.fail = [], fail

    def __call__(self, request, timeout):
        self.requests.append(request)
        if self.fail:
            raise OSError("connection refused")
        return FakeResponse(json.dumps({"service": "vizconfig", "colour": "green",
                                        "version": "2.0.0", "config": {}}).encode())


class CallTest(unittest.TestCase):
    def test_passes_the_preview_header_on(self):
        opener = Recorder()
        self.assertEqual(server.call_vizconfig("http://p/e/vizconfig/", "e", opener),
                         {"colour": "green", "version": "2.0.0"})
        self.assertEqual(opener.requests[0].get_header("X-bluegreen-preview"), "e")
        self.assertEqual(opener.requests[0].full_url, "http://p/e/vizconfig/")

    def test_sends_no_header_without_one(self):
        opener = Recorder()
        server.call_vizconfig("http://p/e/vizconfig/", None, opener)
        self.assertIsNone(opener.requests[0].get_header("X-bluegreen-preview"))

    def test_a_failed_call_is_an_error_entry(self):
        self.assertIn("error", server.call_vizconfig("http://p/", None, Recorder(fail=True)))
        self.assertIn("error", server.call_vizconfig(None, None, Recorder()))


class HandlerTest(unittest.TestCase):
    def setUp(self):
        self.opener = Recorder()
        server.Handler.opener = staticmethod(self.opener)
        self.http = ThreadingHTTPServer(("127.0.0.1", 0), server.Handler)
        threading.Thread(target=self.http.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.http.server_address[1]}"

    def tearDown(self):
        self.http.shutdown()
        self.http.server_close()

    def get(self, path, headers=None):
        request = urllib.request.Request(self.base + path, headers=headers or {})
        with urllib.request.urlopen(request, timeout=5) as response:
            return response, json.load(response)

    def test_root_answers_identity_and_what_vizconfig_answered(self):
        server.os.environ["VIZCONFIG_URL"] = "http://p/e/vizconfig/"
        response, body = self.get("/", {"X-Bluegreen-Preview": "e"})
        self.assertEqual(body["vizconfig"], {"colour": "green", "version": "2.0.0"})
        self.assertEqual(set(body) - {"vizconfig"}, {"service", "version", "colour", "environment"})
        self.assertEqual(response.headers["X-Service-Version"], server.IDENTITY["version"])
        self.assertEqual(response.headers["X-Service-Colour"], server.IDENTITY["colour"])
        self.assertEqual(self.opener.requests[0].get_header("X-bluegreen-preview"), "e")

    def test_health_is_200(self):
        response, body = self.get("/health")
        self.assertEqual((response.status, body["status"]), (200, "passing"))


if __name__ == "__main__":
    unittest.main()
