"""The deploy lock of a service in an environment: a Consul session (TTL, behavior delete) holds
naming.lock_key while `rollback`, `promote`, the pipeline or a `pulumi up` through ./bg works on
the service. A thread renews the session; when its holder dies the session lapses within two TTLs
and the key is deleted. A second comer is refused naming the holder, or waits (--lock-wait).

`python -m bluegreen.delivery.lock --stack S [--lock-wait D] -- COMMAND...` runs COMMAND holding the locks
of every service the stack deploys (./bg wraps `pulumi up` and `destroy` with it)."""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Iterator, TextIO

from bluegreen.components.consul import api as consul_api
from bluegreen.components.model.audit import Operator
from bluegreen.components.model.lock import (
    LOCK_TTL_S, RENEW_EVERY_S, WAIT_STEP_S, abandoned, held_message, holder_record, parse_holder,
    status_line
)
from bluegreen.components.model.validation import ConfigError
from bluegreen.components.naming import lock_key

from .audit import now, operator, trail_or_none
from .cli import duration
from .recovery import pid_alive
from .stacks import EnvStack, consul_address, stack_for_service
from .steps import StepFailed

MAX_ATTEMPTS = 10_000   # a bound besides the deadline: every attempt blocks or sleeps a little


class LockHeld(Exception):
    """Another holder has the lock; nothing was changed. The message names the holder."""

    def __init__(self, message: str, service: str):
        super().__init__(message)
        self.service = service


class DeployLock:
    """`with DeployLock(...):` holds the lock of `service` in `environment` for the block."""

    def __init__(self, consul: str, token: str, environment: str, service: str, stack: str,
                 who: Operator, wait_s: float = 0.0, out: TextIO | None = None):
        self.consul, self.token, self.environment = consul, token, environment
        self.service, self.stack, self.who, self.wait_s = service, stack, who, wait_s
        self.out = out or sys.stderr
        self.key = lock_key(environment, service)
        self.session: str | None = None
        self.acquired_s: float | None = None
        self.lost = False
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def __enter__(self) -> "DeployLock":
        self.acquire()
        return self

    def __exit__(self, *_) -> None:
        self.release()

    def acquire(self) -> None:
        started = time.monotonic()
        session = consul_api.session_create(
            self.consul, self.token, f"deploy lock {self.environment}/{self.service}", LOCK_TTL_S)
        self.session = session
        try:
            self._take(session, started)
        except BaseException:
            self._end_session()
            raise
        self.acquired_s = time.monotonic() - started
        if self.acquired_s >= 1:
            print(f"lock: took the deploy lock of {self.service} in {self.environment} after "
                  f"waiting {self.acquired_s:.1f}s", file=self.out, flush=True)
        self._renewer = threading.Thread(target=self._renew, args=(session,), daemon=True)
        self._renewer.start()

    def _take(self, session: str, started: float) -> None:
        value = holder_record(self.who, now(), os.getpid(), socket.gethostname())
        index = 0
        for _ in range(MAX_ATTEMPTS):
            if consul_api.kv_acquire(self.consul, self.key, value, session, self.token):
                return
            left = self.wait_s - (time.monotonic() - started)
            found, index = consul_api.kv_entry(self.consul, self.key, self.token, index,
                                               min(WAIT_STEP_S, left) if index else 0)
            if found is not None and found.session and abandoned(
                    parse_holder(found.value), socket.gethostname(), pid_alive):
                print(f"lock: the deploy lock of {self.service} in {self.environment} was held by "
                      f"process {parse_holder(found.value).get('pid')} of this machine, which is "
                      f"gone; taking it", file=self.out, flush=True)
                consul_api.session_destroy(self.consul, found.session, self.token)
                index = 0
                continue
            if left <= 0:
                raise LockHeld(held_message(self.service, self.stack, self.environment,
                                            parse_holder(found.value if found else None), now(),
                                            time.monotonic() - started), self.service)
            if found is None:
                time.sleep(0.05)   # deleted meanwhile: take it at once, but never spin
        raise LockHeld(f"the deploy lock of {self.service} in {self.environment} changed hands "
                       f"{MAX_ATTEMPTS} times while waiting; nothing was changed", self.service)

    def _renew(self, session: str) -> None:
        while not self._stop.wait(RENEW_EVERY_S):
            try:
                if consul_api.session_renew(self.consul, session, self.token):
                    continue
                self.lost = True
                print(f"lock: the deploy lock of {self.service} in {self.environment} was taken "
                      f"away (its session ended; ./bg lock release?); finishing what runs",
                      file=self.out)
                return
            except consul_api.ConsulError as error:
                print(f"lock: renewing the deploy lock of {self.service} failed ({error}); "
                      f"retrying", file=self.out)

    def release(self) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=RENEW_EVERY_S + 15)
        self._end_session()

    def _end_session(self) -> None:
        if self.session is None:
            return
        try:
            consul_api.session_destroy(self.consul, self.session, self.token)
        except consul_api.ConsulError as error:
            print(f"lock: could not release the deploy lock of {self.service} ({error}); it frees "
                  f"itself within {2 * LOCK_TTL_S}s", file=self.out)
        self.session = None


def service_lock(stack: EnvStack, service: str, who: Operator, wait_s: float = 0.0,
                 out: TextIO | None = None) -> DeployLock:
    """The lock of `service` in the environment of `stack` (not taken yet)."""
    config = stack.config()
    return DeployLock(consul_address(config, service), stack.deployer_token(), config.environment,
                      service, stack.name, who, wait_s, out)


@contextlib.contextmanager
def holding(locks: list[DeployLock]) -> Iterator[list[DeployLock]]:
    """Takes every lock (in key order, so two commands never wait on each other), or none."""
    taken: list[DeployLock] = []
    try:
        for lock in sorted(locks, key=lambda lock: lock.key):
            lock.acquire()
            taken.append(lock)
        yield taken
    finally:
        for lock in reversed(taken):
            lock.release()


# -- ./bg lock status|release -------------------------------------------------------------------

def _lock_stack(stack_name: str, service: str | None) -> tuple[EnvStack, list[str]]:
    stack = EnvStack(stack_for_service(stack_name, service) if service else stack_name)
    services = [service] if service else [s.name for s in stack.config().services]
    if not services:
        raise StepFailed(f"stack {stack.name} deploys no service: name one")
    return stack, services


def holder_of(consul: str, token: str, environment: str, service: str) -> tuple[dict | None, str]:
    """The lock's holder (None: free) and the session that holds it."""
    found, _ = consul_api.kv_entry(consul, lock_key(environment, service), token)
    if found is None or not found.session:
        return None, ""
    return parse_holder(found.value), found.session


def run_lock(action: str, service: str | None, stack_name: str, out: TextIO | None = None,
             who: Operator | None = None) -> int:
    out = out or sys.stdout
    who = who or operator(f"lock {action} {service or ''} --stack {stack_name}")
    try:
        stack, services = _lock_stack(stack_name, service)
        config, token = stack.config(), stack.deployer_token()
        for name in services:
            holder, session = holder_of(consul_address(config, name), token, config.environment, name)
            if action == "release" and session:
                _release(stack, name, holder, session, who, out)
            elif action == "release":
                print(f"{name} in {config.environment}: free, nothing to release", file=out)
            else:
                print(status_line(name, config.environment, holder, now()), file=out)
    except (StepFailed, ConfigError, consul_api.ConsulError) as error:
        print(f"lock: {error}", file=out)
        return 2
    return 0


def _release(stack: EnvStack, service: str, holder: dict | None, session: str, who: Operator,
             out: TextIO) -> None:
    """Ends the holder's session: its key goes, and the holder learns it at its next renewal."""
    config = stack.config()
    consul_api.session_destroy(consul_address(config, service), session, stack.deployer_token())
    was = status_line(service, config.environment, holder, now()).split(": ", 1)[1]
    print(f"released the deploy lock of {service} in {config.environment} ({was})", file=out)
    trail = trail_or_none(stack, service, who, out)
    if trail:
        trail.record("unlocked", service, reason=was)


# -- python -m bluegreen.delivery.lock --stack S -- COMMAND ----------------------------------------------

def stack_locks(stack: EnvStack, who: Operator, wait_s: float, out: TextIO) -> list[DeployLock]:
    """The locks of every service of the stack; none (said) before its platform runs, when the
    command is what brings up the Consul the locks would live in."""
    services = [s.name for s in stack.config().services]
    if not services:
        return []
    try:
        stack.deployer_token()
    except StepFailed as error:
        if stack.config().platform is None:
            raise
        print(f"lock: {stack.name} runs unlocked: its platform's Consul is not up yet ({error})",
              file=out)
        return []
    return [service_lock(stack, service, who, wait_s, out) for service in services]


def _die_with_parent() -> None:
    # The lock lapses when this process dies; what it guards must not run on without it.
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)   # PR_SET_PDEATHSIG


def run_locked(command: list[str]) -> int:
    """Runs `command` to its end; Ctrl-C goes to it (pulumi cancels cleanly), not to the lock."""
    child = subprocess.Popen(command, preexec_fn=_die_with_parent)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return child.wait()
    finally:
        signal.signal(signal.SIGINT, previous)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bluegreen.delivery.lock", description=(
        "Runs COMMAND holding the deploy lock of every service STACK deploys."))
    parser.add_argument("--stack", required=True)
    parser.add_argument("--lock-wait", type=duration, default=0.0, metavar="DURATION",
                        help="wait up to DURATION for a held lock (default: refuse at once)")
    parser.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND...")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("name the command to run after --")
    who = operator(" ".join(command))
    try:
        stack = EnvStack(args.stack)
        locks = stack_locks(stack, who, args.lock_wait, sys.stderr)
        with holding(locks):
            return run_locked(command)
    except LockHeld as error:
        print(f"REFUSED: {error}", file=sys.stderr)
        trail = trail_or_none(stack, error.service, who, sys.stderr)
        if trail:
            trail.record("refused", error.service, reason=str(error))
        return 2
    except (StepFailed, ConfigError, consul_api.ConsulError) as error:
        print(f"lock: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
