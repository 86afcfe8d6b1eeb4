"""Long-lived streams across a flip.

The proxy keeps a stream on the colour it started on after a flip, and ends whatever is still
open when its drain bound (bluegreen/proxy/drain-timeout) runs out, all at once. So that clients
do not all reconnect in the same instant, this service ends each stream that started while its
colour was live at its own random moment in a window inside that bound, once it sees the alias
(bluegreen/aliases/<environment>/<service>) name the other colour. Clients reconnect, and the
proxy sends them to the new colour. Stdlib only."""

import os
import random
import re
import threading
import time
import urllib.error
import urllib.request

DEFAULT_DRAIN_S = 30.0
# Streams end between these fractions of the drain after the flip: they keep working on their
# colour for at least half of it, and the last ones end well before the proxy's own cut.
WINDOW = (0.5, 0.9)
WATCH_WAIT = "20s"


def alias_key(environment: str, service: str) -> str:
    return f"bluegreen/aliases/{environment}/{service}"


DRAIN_KEY = "bluegreen/proxy/drain-timeout"


def parse_duration(text: str | None) -> float | None:
    """'30s', '1500ms' or '1m' in seconds; None when absent or not a duration."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)(ms|s|m)\s*", text or "")
    if not match:
        return None
    return float(match.group(1)) * {"ms": 0.001, "s": 1.0, "m": 60.0}[match.group(2)]


def close_deadline(flipped_at: float, drain_s: float, rng: random.Random) -> float:
    """When one stream opened before a flip away from this colour ends."""
    low, high = WINDOW
    return flipped_at + drain_s * rng.uniform(low, high)


class Stream:
    """One open stream: the flip generation it started in, and whether that was on the live colour."""

    def __init__(self, generation: int, started_live: bool):
        self.generation = generation
        self.started_live = started_live
        self.deadline: float | None = None


class FlipWatch:
    """What the service knows about its alias: the live colour, and the flips away from its own."""

    def __init__(self, colour: str, rng: random.Random | None = None):
        self.colour = colour
        self.rng = rng or random.Random()
        self.live: str | None = None     # None: not read yet (or no alias)
        self.generation = 0              # flips away from this colour seen so far
        self.flipped_at = 0.0
        self.drain_s = DEFAULT_DRAIN_S
        self._lock = threading.Lock()

    def observe(self, live: str | None, drain_s: float | None, now: float) -> bool:
        """One reading of the alias; True when it is a flip away from this colour."""
        with self._lock:
            flipped = self.live == self.colour and live not in (None, self.colour)
            self.live = live
            if flipped:
                self.generation += 1
                self.flipped_at = now
                self.drain_s = drain_s or DEFAULT_DRAIN_S
            return flipped

    def opened(self) -> Stream:
        with self._lock:
            # Unknown counts as live: a stream on a preview URI is the only one that should stay.
            return Stream(self.generation, self.live in (None, self.colour))

    def deadline(self, stream: Stream) -> float | None:
        """When `stream` should end (None: not because of a flip). Once set it stays: a flip back
        does not help a stream the proxy already holds on a retiring worker."""
        with self._lock:
            if stream.deadline is None and stream.started_live and stream.generation < self.generation:
                stream.deadline = close_deadline(self.flipped_at, self.drain_s, self.rng)
            return stream.deadline


def consul_token() -> str:
    """The service's own Consul token: the file CONSUL_HTTP_TOKEN_FILE names (or
    CONSUL_HTTP_TOKEN), read each time so a new token needs no restart."""
    path = os.environ.get("CONSUL_HTTP_TOKEN_FILE")
    if path:
        try:
            with open(path, encoding="utf-8") as handle:
                return handle.read().strip()
        except OSError:
            return ""
    return os.environ.get("CONSUL_HTTP_TOKEN", "")


def read_key(agent: str, key: str, index: str | None = None) -> tuple[str | None, str | None]:
    """(value, X-Consul-Index) of one key; with `index`, a blocking query that returns on change."""
    url = f"{agent.rstrip('/')}/v1/kv/{key}?raw=true"
    if index:
        url += f"&index={index}&wait={WATCH_WAIT}"
    # The service's own Consul token: it may read its alias and the drain bound, nothing more.
    token = consul_token()
    request = urllib.request.Request(url, headers={"X-Consul-Token": token} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.read().decode().strip(), response.headers.get("X-Consul-Index")
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return None, error.headers.get("X-Consul-Index")
        raise


def watch(flips: FlipWatch, agent: str, key: str) -> None:
    """Follows the alias for as long as the process runs (a daemon thread)."""
    index = None
    while True:
        try:
            live, new_index = read_key(agent, key, index)
            drain_s = None
            if live not in (None, flips.colour) and flips.live == flips.colour:
                drain_s = parse_duration(read_key(agent, DRAIN_KEY)[0])
            flips.observe(live, drain_s, time.monotonic())
            # A lower index means Consul's state was reset: start over without blocking.
            index = new_index if new_index and (index is None or int(new_index) >= int(index)) else None
        except Exception:  # noqa: BLE001 - Consul away: keep streams as they are and retry
            time.sleep(1)
