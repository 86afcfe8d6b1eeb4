"""Splits and cohorts: part of a service's stable traffic on the offline colour, and chosen
clients on a chosen colour. Pure: parsed from a stack entry's `split:`, kept in Consul KV as one
JSON record (naming.split_key) that the proxy renders.

- `percent` (0-99): the share of clients the stable URI sends to the offline colour. Each client
  falls in one of 100 buckets by a hash of its key, so raising the share keeps the clients it had
  and adds others. The key is the proxy's cookie (naming.SPLIT_COOKIE, set on the first answer
  during a split), or with `sticky: {header: NAME}` that header's value (the cookie when absent).
- `cohorts`: requests whose header or cookie has a value go to a named colour, before the split.
- 100% is a flip: it goes through the flip's gate and ends the split (a flip always does).

A split only moves traffic, but while it does, the colour it names serves clients: model.live
treats it as serving (`serving_colours`), so nothing replaces it then either."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from bluegreen.components.model.validation import ConfigError, Fields
from bluegreen.components.naming import COLOURS, PROXY_HEADERS, offline_colour

HEADER_PATTERN = r"[A-Za-z][A-Za-z0-9-]{0,63}"
COOKIE_PATTERN = r"[A-Za-z][A-Za-z0-9_]{0,63}"
VALUE_PATTERN = r"[A-Za-z0-9._-]{1,64}"
MAX_COHORTS = 8


@dataclass(frozen=True)
class Cohort:
    """Requests whose `kind` (header or cookie) `name` equals `value` go to `colour`."""

    kind: str
    name: str
    value: str
    colour: str

    @property
    def variable(self) -> str:
        """nginx's variable for the header or cookie, e.g. http_x_beta, cookie_beta."""
        prefix = "http_" if self.kind == "header" else "cookie_"
        return prefix + self.name.lower().replace("-", "_")

    def describe(self) -> str:
        return f"{self.kind} {self.name}={self.value} -> {self.colour}"


@dataclass(frozen=True)
class Split:
    """What the stack file (or `./bg split`) asks of a service's stable traffic."""

    percent: int = 0
    sticky_header: str | None = None        # None: the proxy's cookie
    cohorts: tuple[Cohort, ...] = field(default_factory=tuple)

    def with_percent(self, percent: int) -> "Split":
        return Split(percent, self.sticky_header, self.cohorts)


NO_SPLIT = Split()


def parse_split(fields: Fields, colours: dict[str, Any]) -> Split:
    """`split:` of a service's stack entry (`fields` is the entry; `colours` those it configures)."""
    if not fields.has("split"):
        return NO_SPLIT
    split = fields.nested("split", ["percent", "sticky", "cohorts"])
    percent = split.integer("percent", 0, minimum=0, maximum=100)
    if percent == 100:
        raise split.error("percent", "100 is a flip, not a split: change live: to the offline "
                          "colour (or run ./bg split SERVICE --stack S --percent 100)")
    return Split(percent, _sticky_header(split), _cohorts(split, colours))


def _sticky_header(split: Fields) -> str | None:
    raw = split.raw("sticky", "cookie")
    if raw == "cookie":
        return None
    sticky = split.nested("sticky", ["header"]) if isinstance(raw, dict) else None
    if sticky is None or not sticky.has("header"):
        raise split.error("sticky", f"{raw!r} is not allowed; write cookie (the proxy's cookie "
                          "keeps each client on its colour) or {header: X-User-Id}")
    return _header_name(sticky, "header")


def _header_name(fields: Fields, key: str) -> str:
    name = fields.string(key, pattern=HEADER_PATTERN, hint="a header name, e.g. X-User-Id")
    if name.lower() in {header.lower() for header in PROXY_HEADERS}:
        raise fields.error(key, f"{name} is the proxy's own header (it strips it from clients); "
                           "name one the service's clients send")
    return name


def _cohorts(split: Fields, colours: dict[str, Any]) -> tuple[Cohort, ...]:
    raw = split.raw("cohorts", [])
    if not isinstance(raw, list) or len(raw) > MAX_COHORTS:
        raise split.error("cohorts", f"must be a list of at most {MAX_COHORTS} cohorts, e.g. "
                          "[{header: X-Beta, value: \"1\", colour: green}]")
    cohorts = []
    for index, item in enumerate(raw):
        cohort = Fields(split.source, f"{split.at('cohorts')}[{index}]", item,
                        ["header", "cookie", "value", "colour"])
        cohorts.append(_cohort(cohort, colours))
    return tuple(cohorts)


def _cohort(cohort: Fields, colours: dict[str, Any]) -> Cohort:
    kinds = [kind for kind in ("header", "cookie") if cohort.has(kind)]
    if len(kinds) != 1:
        raise cohort.error("header", "name exactly one of header or cookie, e.g. "
                           "{header: X-Beta, value: \"1\", colour: green}")
    kind = kinds[0]
    name = _header_name(cohort, kind) if kind == "header" else cohort.string(
        kind, pattern=COOKIE_PATTERN, hint="a cookie name: letters, digits and _")
    colour = cohort.choice("colour", COLOURS)
    if colour not in colours:
        raise cohort.error("colour", f"{colour} has no version configured; add {colour}: "
                           "{version: ...} or send the cohort to the other colour")
    return Cohort(kind, name, cohort.string(
        "value", pattern=VALUE_PATTERN, hint="1 to 64 letters, digits, '.', '_' or '-'"), colour)


def split_record(split: Split, live: str) -> dict[str, Any]:
    """The KV record for `split` while `live` is the alias's colour: the share goes offline."""
    return {"colour": offline_colour(live), "percent": split.percent,
            "sticky": {"header": split.sticky_header} if split.sticky_header else {"cookie": True},
            "cohorts": [{"kind": c.kind, "name": c.name, "variable": c.variable, "value": c.value,
                         "colour": c.colour} for c in split.cohorts]}


def split_value(split: Split, live: str) -> str:
    """The record as Consul KV holds it."""
    return json.dumps(split_record(split, live), sort_keys=True)


def parse_record(text: str | None, source: str = "Consul KV") -> tuple[str | None, Split]:
    """A KV record back as (the colour its share goes to, the split); (None, NO_SPLIT) when absent."""
    if not text:
        return None, NO_SPLIT
    try:
        record = json.loads(text)
        cohorts = tuple(Cohort(c["kind"], c["name"], c["value"], c["colour"])
                        for c in record.get("cohorts", []))
        header = record.get("sticky", {}).get("header")
        return record["colour"], Split(int(record["percent"]), header, cohorts)
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ConfigError(source, "split", f"the split record {text!r} is not one this version "
                          "wrote; set it again with ./bg split") from None


def share(text: str | None, live: str | None) -> tuple[str | None, int]:
    """(the colour, the percent) a split record sends away from `live`: (None, 0) when none."""
    colour, split = parse_record(text)
    if live is None or colour is None or colour == live or not split.percent:
        return None, 0
    return colour, split.percent


def serving_colours(text: str | None, live: str | None) -> dict[str, str]:
    """Every colour serving clients besides the alias's, with why (a share, a cohort)."""
    colour, percent = share(text, live)
    reasons = {colour: f"the split sends it {percent}% of the stable traffic"} if colour else {}
    for cohort in parse_record(text)[1].cohorts:
        if cohort.colour != live:
            reasons.setdefault(cohort.colour, f"the cohort {cohort.name}={cohort.value} goes to it")
    return reasons


def describe(split: Split, colour: str | None) -> str:
    """One line for status, preview and the audit trail; `colour` is where the share goes."""
    parts = []
    if split.percent and colour:
        sticky = f"by header {split.sticky_header}" if split.sticky_header else "by cookie"
        parts.append(f"{split.percent}% to {colour} (sticky {sticky})")
    parts += [cohort.describe() for cohort in split.cohorts]
    return "; ".join(parts) or "no split"


def describe_record(text: str | None) -> str:
    """describe() of a KV record (or of none)."""
    colour, split = parse_record(text)
    return describe(split, colour)


def checked_percent(text: str) -> int:
    """A --percent argument: an integer 0 to 100."""
    if not re.fullmatch(r"[0-9]{1,3}", text.strip()) or int(text) > 100:
        raise ValueError(f"{text!r} is not a percentage; write an integer from 0 (end the split) "
                         "to 100 (flip)")
    return int(text)
