"""`approve`: lets a flip held by `confirm: manual` go. The held flip (a `pulumi up`, rollback,
promote or split waiting in its pre-flip step) wrote what it would do under naming.approval_key;
this marks that record approved (check-and-set, so it approves only what it showed) and audits
who did, in one transaction. The waiting command then flips; one that gave up left traffic where
it was."""

from __future__ import annotations

import json
import sys
from typing import TextIO

from bluegreen.components.consul import api as consul_api
from bluegreen.components.model.audit import Operator, audit_record
from bluegreen.components.model.hooks import WAITING, approval_record, describe
from bluegreen.components.model.validation import ConfigError
from bluegreen.components.naming import approval_key, format_time

from . import audit
from .stacks import EnvStack, consul_address, stack_for_service
from .steps import StepFailed


class NothingHeld(Exception):
    """No flip of the service waits for approval; nothing was changed."""


def held_flip(consul: str, key: str, token: str) -> tuple[dict, int]:
    """The waiting flip's record and its index, or NothingHeld."""
    value, index = consul_api.kv_get_indexed(consul, key, token)
    try:
        record = json.loads(value) if value else None
    except ValueError:
        record = None
    if not isinstance(record, dict) or record.get("status") != WAITING:
        raise NothingHeld(f"no flip waits for approval at {key}" +
                          (f" (it holds {value!r})" if value and not isinstance(record, dict) else
                           " (approved already)" if record else ""))
    return record, index


def run_approve(service: str, stack_name: str, out: TextIO | None = None,
                who: Operator | None = None) -> int:
    out = out or sys.stdout
    who = who or audit.operator(f"approve {service} --stack {stack_name}")
    try:
        stack = EnvStack(stack_for_service(stack_name, service))
        config, token = stack.config(), stack.deployer_token()
        consul = consul_address(config, service)
        key = approval_key(config.environment, service)
        record, index = held_flip(consul, key, token)
        approve(consul, key, token, record, index, who, config.environment)
    except (StepFailed, ConfigError, NothingHeld, consul_api.ConsulError) as error:
        print(f"approve: {error}; nothing was approved", file=out)
        return 2
    print(f"approved the flip of {describe(record)} (held since {record.get('since')}); "
          "the waiting command carries it out", file=out)
    return 0


def approve(consul: str, key: str, token: str, record: dict, index: int, who: Operator,
            environment: str) -> None:
    """Marks the held flip approved (check-and-set) with its audit record in one transaction, so
    the trail holds the approval before the flip it lets go."""
    moment = audit.now()
    approved = approval_record(record, who.actor, format_time(moment))
    trail = audit_record(event="approved", environment=environment, service=record["service"],
                         operator=who, now=moment, before=record.get("from"), after=record.get("to"),
                         version=record.get("version"), reason=f"the flip held for {record.get('actor')}")
    if not consul_api.kv_cas_many(consul, {key: (json.dumps(approved, sort_keys=True), index)}, token,
                                  dict([audit.entry(trail, moment)])):
        raise NothingHeld(f"the held flip at {key} changed while approving (it gave up or "
                          "another approval came first); run the command again")
