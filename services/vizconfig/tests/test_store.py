"""The service's own tests: run inside the image, in isolation (no database needed)."""

import sys
import unittest

sys.path.insert(0, "/app")

from store import ConfigStore  # noqa: E402


class FakeRedis:
    def __init__(self):
        self.data = {}

    def ping(self):
        return True

    def set(self, key, value):
        self.data[key] = value.encode()

    def get(self, key):
        return self.data.get(key)

    def delete(self, key):
        return 1 if self.data.pop(key, None) is not None else 0

    def scan_iter(self, pattern):
        return [k.encode() for k in self.data if k.startswith(pattern.rstrip("*"))]


class ConfigStoreTest(unittest.TestCase):
    def test_round_trip_under_prefix(self):
        store = ConfigStore(FakeRedis(), "vizconfig:test:")
        store.put("chart-1", {"type": "bar", "series": [1, 2]})
        self.assertEqual(store.get("chart-1"), {"type": "bar", "series": [1, 2]})
        self.assertEqual(store.ids(), ["chart-1"])
        self.assertTrue(store.delete("chart-1"))
        self.assertIsNone(store.get("chart-1"))


if __name__ == "__main__":
    unittest.main()
