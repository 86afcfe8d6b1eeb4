"""The live colour: nothing but the flip touches what serves traffic. The program refuses such an
update unless the change acknowledges it (`acknowledgeLive`), and records in the colour's slot
record (`bluegreen/slots/<env>/<service>/<colour>`) why it replaces the containers of the colour
that was live and which acknowledgement allowed it; this mandatory rule fails any update whose
record says the live colour is replaced without one (a program that skipped the check)."""

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
        record = json.loads(value)
    except ValueError:
        return []
    reason = record.get("replacedLive")
    if not reason or record.get("acknowledgedBy"):
        return []
    return [f"{match['environment']}/{match['service']}: this update replaces the containers "
            f"serving traffic: {reason}, and the change does not acknowledge it. Ship it as a new "
            "release on the offline colour and flip, or, when a restart of the live colour is "
            "the point (a shared dependency, a host removed, a platform upgrade), add the "
            "acknowledgeLive value the program's refusal names"]


POLICIES = [
    resource_policy(
        "live-colour-untouched",
        "An update does not replace, restart or re-pull the containers of the live colour; only "
        "the flip moves traffic.",
        EnforcementLevel.MANDATORY, check_live_untouched, severity=Severity.HIGH),
]
