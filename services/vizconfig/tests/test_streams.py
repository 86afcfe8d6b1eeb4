"""Streams across a flip: when each one ends (no Consul needed)."""

import os
import random
import sys
import unittest

sys.path.insert(0, "/app")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "app"))

from streams import WINDOW, FlipWatch, alias_key, close_deadline, parse_duration  # noqa: E402


class StreamsTest(unittest.TestCase):
    def test_durations_read_like_the_platform_writes_them(self):
        self.assertEqual(parse_duration("30s"), 30.0)
        self.assertEqual(parse_duration("1500ms"), 1.5)
        self.assertEqual(parse_duration("1m"), 60.0)
        self.assertIsNone(parse_duration("soon"))
        self.assertIsNone(parse_duration(None))

    def test_the_alias_key_is_the_platforms(self):
        self.assertEqual(alias_key("production", "vizconfig"), "bluegreen/aliases/production/vizconfig")

    def test_deadlines_fall_inside_the_window_and_spread_out(self):
        rng = random.Random(7)
        deadlines = [close_deadline(100.0, 10.0, rng) for _ in range(50)]
        self.assertTrue(all(100.0 + 10 * WINDOW[0] <= d <= 100.0 + 10 * WINDOW[1] for d in deadlines))
        self.assertGreater(max(deadlines) - min(deadlines), 2.0)

    def test_only_streams_open_on_the_live_colour_at_a_flip_get_a_deadline(self):
        flips = FlipWatch("blue", random.Random(1))
        flips.observe("blue", None, 1.0)
        before = flips.opened()
        self.assertIsNone(flips.deadline(before))
        self.assertTrue(flips.observe("green", 8.0, 10.0))
        after = flips.opened()   # a preview stream on the now offline colour stays
        deadline = flips.deadline(before)
        self.assertTrue(10.0 + 8.0 * WINDOW[0] <= deadline <= 10.0 + 8.0 * WINDOW[1])
        self.assertIsNone(flips.deadline(after))
        # A flip back keeps the deadline: the proxy holds that stream on a retiring worker.
        self.assertFalse(flips.observe("blue", None, 11.0))
        self.assertEqual(flips.deadline(before), deadline)

    def test_a_missing_drain_means_the_default_and_unknown_alias_counts_as_live(self):
        flips = FlipWatch("green")
        stream = flips.opened()
        flips.observe("green", None, 0.0)
        flips.observe("blue", None, 5.0)
        self.assertLessEqual(flips.deadline(stream), 5.0 + 30.0 * WINDOW[1])
        self.assertFalse(flips.observe("blue", None, 6.0), "the same colour again is no flip")


if __name__ == "__main__":
    unittest.main()
