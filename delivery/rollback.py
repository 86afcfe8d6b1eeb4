"""`rollback`: move a service's `live` back to the other colour and `pulumi up`.

The other colour still runs the previous version (the pipeline only ever deploys to the offline
colour), so only the alias moves: no container is created, replaced or restarted. With git the
same is `git revert <the pipeline's flip commit>` + `pulumi up --stack <stack>`: the flip is a
config change of its own (`live:` in stacks/Pulumi.<stack>.yaml)."""

from __future__ import annotations

import os
import sys

from components.model.validation import ConfigError
from components.naming import alias_key, offline_colour

from . import REPO
from .stacks import EnvStack
from .steps import StepFailed


def run_rollback(service: str, stack_name: str, out=None) -> int:
    out = out or sys.stdout
    log = os.path.join(REPO, "reports", f"rollback-{service}-{stack_name.rsplit('/', 1)[-1]}.log")
    try:
        stack = EnvStack(stack_name, log)
        config = stack.config()
        settings = stack.service(service)
    except (StepFailed, ConfigError) as error:
        print(f"rollback: {error}", file=out)
        return 2
    if settings is None:
        print(f"rollback: stack {stack.name} does not deploy {service}", file=out)
        return 2
    live, target = settings.live, offline_colour(settings.live)
    if target not in settings.colours:
        print(f"rollback: nothing to roll back to: {service} on {stack.name} has no {target} "
              f"version (only {live} {settings.colours[live].version} is configured)", file=out)
        return 1
    before = stack.colour_state(service)
    old, new = settings.colours[live].version, settings.colours[target].version
    print(f"rollback: {service} on {stack.name}: live {live} ({old}) -> {target} ({new}); pulumi up",
          file=out, flush=True)
    stack.set_service(service, {"live": target})
    try:
        stack.up(f"rollback {service} to {target}")
    except StepFailed as error:
        stack.set_service(service, {"live": live})
        print(f"rollback FAILED: {error}\nthe alias stays on {live}; stacks/Pulumi.{stack.name}.yaml "
              f"says live: {live} again (log: {os.path.relpath(log)})", file=out)
        return 1
    after = stack.colour_state(service)
    changes = stack.last_changes
    touched = {op: n for op, n in changes.items() if op != "same" and n}
    print(f"moved: alias {alias_key(config.environment, service)}: {before.alias} -> {after.alias}\n"
          f"resource changes: {', '.join(f'{n} {op}' for op, n in sorted(touched.items())) or 'none'}"
          f" (containers: {stack.container_changes or 'none changed'})\n"
          f"with git the same is: git revert <flip commit> && pulumi up --stack {stack.name}",
          file=out, flush=True)
    return 0
