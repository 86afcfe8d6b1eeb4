"""The live colour: nothing but the flip touches what serves traffic. The program records, in the
colour's slot record (`bluegreen/slots/<env>/<service>/<colour>`), why an update replaces the
containers of the colour that was live; this rule turns that into a warning on the preview."""

from __future__ import annotations

import json
import re
from typing import Any, Mapping

from pulumi_policy import EnforcementLevel, Severity

from .common import CONSUL_KEY, KV_ROOT, dynamic_kind, resource_policy

SLOT_KEY = re.compile(rf"^{KV_ROOT}/slots/(?P<environment>[^/]+)/(?P<service>[^/]+)/(?P<colour>[^/]+)$")


def check_live_untouched(resource: Mapping[str, Any], _config: Mapping[str, Any]) -> list[str]:
    if dynamic_kind(resource) != CONSUL_KEY:
        return []
    props = resource["props"]
    key, value = props.get("key"), props.get("value")
    match = SLOT_KEY.match(key) if isinstance(key, str) else None
    if not match or not isinstance(value, str):
        return []
    try:
        reason = json.loads(value).get("replacedLive")
    except ValueError:
        return []
    if not reason:
        return []
    return [f"{match['environment']}/{match['service']}: this update replaces the containers "
            f"serving traffic: {reason}. Make such a change on its own, when a brief restart of "
            "the live colour is acceptable, or ship it as a new release on the offline colour"]


POLICIES = [
    resource_policy(
        "live-colour-untouched",
        "An update does not replace, restart or re-pull the containers of the live colour; only "
        "the flip moves traffic.",
        EnforcementLevel.ADVISORY, check_live_untouched, severity=Severity.HIGH),
]
