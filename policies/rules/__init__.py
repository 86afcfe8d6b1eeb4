"""The rules of the bluegreen policy pack, grouped by concern; ALL_POLICIES is the whole pack.

Each module keeps its checks as pure functions over plain dicts (see common.py) and exposes
POLICIES, built with common.resource_policy / common.stack_policy. To add a rule, write the check,
append a policy to its module's POLICIES (or add a module and list it below), and test it under
tests/policy/.
"""

from __future__ import annotations

from . import aliases, containers, images, live, production, registration, secrets
from .secret_markers import install as install_secret_markers

ALL_POLICIES = [
    *images.POLICIES,
    *containers.POLICIES,
    *registration.POLICIES,
    *aliases.POLICIES,
    *live.POLICIES,
    *secrets.POLICIES,
    *production.POLICIES,
]

PACK_NAME = "bluegreen"

__all__ = ["ALL_POLICIES", "PACK_NAME", "install_secret_markers"]
