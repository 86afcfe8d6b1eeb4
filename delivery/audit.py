"""The audit trail in Consul KV: written by every delivery command (a flip in the same
transaction as the alias it moves), pruned on write past the stack's `auditRetention`, and listed
by `./bg audit [SERVICE] --stack S [--since 1d] [--json]`."""

from __future__ import annotations

import datetime
import getpass
import json
import os
import socket
import sys
import uuid
from dataclasses import dataclass, field
from typing import TextIO

from bluegreen.components.consul import api as consul_api
from bluegreen.components.model.audit import (
    Operator, actor_name, audit_key, audit_lines, audit_record, expired, since
)
from bluegreen.components.model.config import StackConfig
from bluegreen.components.model.validation import ConfigError
from bluegreen.components.naming import audit_prefix

from .stacks import EnvStack, consul_address, stack_for_service
from .steps import StepFailed

TXN_LIMIT = 64   # operations Consul takes in one transaction


def operator(command: str) -> Operator:
    """Whoever runs this process, running `command`."""
    return Operator(actor_name(os.environ, getpass.getuser(), socket.gethostname()), command)


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def entry(record: dict, moment: datetime.datetime) -> tuple[str, str]:
    """A record's key and value, as one write (or one operation of a transaction) stores it."""
    return audit_key(record, moment, uuid.uuid4().hex[:6]), json.dumps(record, sort_keys=True)


def prune(consul: str, token: str, environment: str, service: str,
          moment: datetime.datetime, retention_s: float) -> int:
    """Deletes the service's records older than the retention time; returns how many."""
    old = expired(consul_api.kv_keys(consul, audit_prefix(environment, service), token),
                  moment, retention_s)
    for start in range(0, len(old), TXN_LIMIT):
        consul_api.kv_cas_many(consul, {}, token, {key: None for key in old[start:start + TXN_LIMIT]})
    return len(old)


@dataclass
class Trail:
    """Where one command writes its events: a service's environment in one Consul cluster."""

    consul: str
    token: str = field(repr=False)
    environment: str
    operator: Operator
    retention_s: float
    out: TextIO = sys.stdout

    @classmethod
    def of(cls, stack: EnvStack, service: str, operator: Operator, out: TextIO | None = None) -> "Trail":
        config = stack.config()
        return cls(consul_address(config, service), stack.deployer_token(), config.environment,
                   operator, config.audit_retention_s, out or sys.stdout)

    def record(self, event: str, service: str, **fields) -> None:
        """Writes one event, then prunes the service's old ones. A trail that cannot be written
        is said and never fails the command: what it records has happened already."""
        moment = now()
        record = audit_record(event=event, environment=self.environment, service=service,
                              operator=self.operator, now=moment, **fields)
        try:
            consul_api.kv_put(self.consul, *entry(record, moment), self.token)
            self.pruned(service, moment)
        except consul_api.ConsulError as error:
            print(f"audit: the {event} of {service} was not recorded: {error}", file=self.out)

    def pruned(self, service: str, moment: datetime.datetime) -> None:
        prune(self.consul, self.token, self.environment, service, moment, self.retention_s)


def trail_or_none(stack: EnvStack | None, service: str, operator: Operator, out: TextIO) -> Trail | None:
    """The trail, or None (said) when Consul's token cannot be had: a refusal is still printed."""
    try:
        return Trail.of(stack, service, operator, out) if stack is not None else None
    except (StepFailed, ConfigError) as error:
        print(f"audit: not recorded ({error})", file=out)
        return None


def read_trail(config: StackConfig, service: str | None, token: str) -> dict[str, str]:
    """Every record of the service (or of the whole environment) in the stack's environment."""
    return consul_api.kv_tree(consul_address(config, service),
                              audit_prefix(config.environment, service or ""), token)


def run_audit(service: str | None, stack_name: str, look_back_s: float | None,
              as_json: bool = False, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    try:
        stack = EnvStack(stack_for_service(stack_name, service) if service else stack_name)
        config = stack.config()
        records = since(read_trail(config, service, stack.deployer_token()), now(), look_back_s)
    except (StepFailed, ConfigError, consul_api.ConsulError) as error:
        print(f"audit: {error}", file=out)
        return 2
    if as_json:
        json.dump(records, out, indent=2)
        out.write("\n")
        return 0
    scope = f"{service} in {config.environment}" if service else f"environment {config.environment}"
    if not records:
        print(f"no audit records of {scope}" + ("" if look_back_s is None else " in that time"), file=out)
        return 0
    print("\n".join(audit_lines(records)), file=out)
    return 0
