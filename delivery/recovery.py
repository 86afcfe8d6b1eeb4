"""Recovery after a `pulumi up` that died (kill -9, a lost machine): what a plain re-run needs.

Two things stay behind. The file backend's lock (`.pulumi/locks/<org>/<project>/<stack>/*.json`,
naming the pid and host of the process that took it) blocks every later update; a lock whose
process is gone from this machine is cleared. Operations that were in flight stay in the state as
pending: an interrupted update or delete is simply done again by the next update, but an
interrupted create may have made a container that the state does not know, and the re-run's create
would collide with its name. Such a container belongs to the offline colour (a deploy creates
nothing else), so it is removed and the pending entry dropped; the re-run creates it again.

A state written by an older version of the package is brought to this one's import path
(`migrations`). `python -m bluegreen.delivery.recovery --stack S` does all three; ./bg runs it before every `pulumi up`,
`refresh`, `destroy` and `preview`, and the delivery commands before every update."""

from __future__ import annotations

import argparse
import glob
import json
import os
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from typing import Callable

from . import migrations

CONTAINER_TYPE = "docker:index/container:Container"


@dataclass(frozen=True)
class Lock:
    path: str
    pid: int
    hostname: str


def read_lock(path: str) -> Lock | None:
    try:
        with open(path, encoding="utf-8") as handle:
            body = json.load(handle)
        return Lock(path, int(body.get("pid", 0)), str(body.get("hostname", "")))
    except (OSError, ValueError, TypeError):
        return None


def pid_alive(pid: int) -> bool:
    """Whether a process runs: a zombie does not (a killed process whose parent died with it
    stays one until it is reaped, and holds nothing any more)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            return handle.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def stale_locks(locks: list[Lock], hostname: str, alive: Callable[[int], bool]) -> list[Lock]:
    """Locks taken on this machine by a process that no longer runs. A lock from another machine
    is never judged: its process may be running there."""
    return [lock for lock in locks if lock.hostname == hostname and not alive(lock.pid)]


def lock_files(backend_dir: str, stack: str) -> list[str]:
    """The lock files of a stack (any organization and project) in a file backend."""
    return sorted(glob.glob(os.path.join(backend_dir, ".pulumi", "locks", "*", "*", stack, "*.json")))


def clear_stale_locks(backend_dir: str, stack: str, out=sys.stderr) -> list[Lock]:
    locks = [lock for lock in map(read_lock, lock_files(backend_dir, stack)) if lock]
    cleared = stale_locks(locks, socket.gethostname(), pid_alive)
    for lock in cleared:
        os.remove(lock.path)
        if os.path.exists(lock.path + ".attrs"):  # the blob store's metadata beside it
            os.remove(lock.path + ".attrs")
        print(f"recovery: cleared the lock of stack {stack} left by process {lock.pid}, which no "
              f"longer runs ({os.path.basename(lock.path)})", file=out)
    return cleared


@dataclass(frozen=True)
class Orphan:
    """A container whose create was interrupted: it may exist on `host` under `name`."""

    urn: str
    name: str
    host: str


def pending_orphans(deployment: dict) -> list[Orphan]:
    """Containers among the pending creates, each with its Docker host (from its provider)."""
    providers = {}
    for resource in deployment.get("resources") or []:
        if resource.get("type", "").startswith("pulumi:providers:"):
            ref = f"{resource['urn']}::{resource.get('id', '')}"
            providers[ref] = (resource.get("inputs") or {}).get("host", "")
    orphans = []
    for operation in deployment.get("pending_operations") or []:
        resource = operation.get("resource") or {}
        if operation.get("type") != "creating" or resource.get("type") != CONTAINER_TYPE:
            continue
        name = (resource.get("inputs") or {}).get("name")
        if name:
            orphans.append(Orphan(resource["urn"], name, providers.get(resource.get("provider", ""), "")))
    return orphans


def without_pending(state: dict) -> dict:
    """The exported state with its pending operations dropped."""
    deployment = dict(state.get("deployment") or {})
    deployment.pop("pending_operations", None)
    return {**state, "deployment": deployment}


def _pulumi(*args: str) -> str:
    result = subprocess.run(["pulumi", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"pulumi {' '.join(args)} failed: {result.stderr.strip()[-800:]}")
    return result.stdout


def repair_attributes(backend_dir: str, stack: str, out=sys.stderr) -> list[str]:
    """Removes a checkpoint's metadata sidecar (`<stack>.json.attrs`) that a kill left empty or
    cut short: the blob store rewrites it, but a damaged one fails every command ("EOF")."""
    removed = []
    for path in glob.glob(os.path.join(backend_dir, ".pulumi", "stacks", "*", f"{stack}.json*.attrs")):
        try:
            with open(path, encoding="utf-8") as handle:
                json.load(handle)
            continue
        except ValueError:
            pass
        except OSError:
            continue
        os.remove(path)
        removed.append(path)
        print(f"recovery: removed {os.path.basename(path)}, left damaged by a killed write", file=out)
    return removed


def latest_checkpoint(backend_dir: str, stack: str) -> dict | None:
    """The stack's latest deployment, read from the file backend directly (cheaper than an
    export); None when it cannot be read as one plain file."""
    paths = glob.glob(os.path.join(backend_dir, ".pulumi", "stacks", "*", f"{stack}.json"))
    if len(paths) != 1:
        return None
    try:
        with open(paths[0], encoding="utf-8") as handle:
            return (json.load(handle).get("checkpoint") or {}).get("latest") or {}
    except (OSError, ValueError):
        return None


def has_pending(backend_dir: str, stack: str) -> bool:
    """Whether the stack's checkpoint has pending operations; True when it cannot tell."""
    latest = latest_checkpoint(backend_dir, stack)
    return has_checkpoint(backend_dir, stack) if latest is None else bool(latest.get("pending_operations"))


def has_checkpoint(backend_dir: str, stack: str) -> bool:
    """Whether the file backend has a checkpoint of the stack (plain or compressed)."""
    return bool(glob.glob(os.path.join(backend_dir, ".pulumi", "stacks", "*", f"{stack}.json"))
                or glob.glob(os.path.join(backend_dir, ".pulumi", "stacks", "*", f"{stack}.json.gz")))


def migration_marker(backend_dir: str, stack: str) -> str:
    """The file that says the stack's providers name this version's import path (checked once)."""
    return os.path.join(backend_dir, ".pulumi", "bluegreen", f"{stack}.import-path")


def needs_migration(backend_dir: str, stack: str) -> bool:
    """Whether the stack's state may name providers by an older version's import path: it has
    one, and no check since this version (its providers are secrets: only an export can tell)."""
    return has_checkpoint(backend_dir, stack) and not os.path.exists(migration_marker(backend_dir, stack))


def export_state(stack: str, cwd: str, show_secrets: bool = False) -> dict:
    return json.loads(_pulumi("stack", "export", "--stack", stack, "--cwd", cwd,
                              *(["--show-secrets"] if show_secrets else [])))


def import_state(stack: str, cwd: str, state: dict) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(state, handle)
    try:
        _pulumi("stack", "import", "--stack", stack, "--cwd", cwd, "--force", "--file", handle.name)
    finally:
        os.remove(handle.name)


def migrate_providers(backend_dir: str, stack: str, cwd: str, out=sys.stderr) -> int:
    """Brings the providers of an older version's state to this import path (delivery.migrations)
    and marks the stack checked; returns how many it rewrote."""
    state = export_state(stack, cwd, show_secrets=True)
    count = migrations.migrate(state.get("deployment") or {})
    if count:
        import_state(stack, cwd, state)
        print(f"recovery: {count} stored providers (inputs and outputs) of the Consul resources of "
              f"stack {stack} now name the bluegreen.* import path (0.4.0); nothing deployed changed",
              file=out)
    marker = migration_marker(backend_dir, stack)
    os.makedirs(os.path.dirname(marker), exist_ok=True)
    with open(marker, "w", encoding="utf-8") as handle:
        handle.write("bluegreen.* (0.4.0)\n")
    return count


def resolve_pending(stack: str, cwd: str, out=sys.stderr) -> int:
    """Drops the stack's pending operations, removing containers of interrupted creates first.
    Returns how many operations were pending."""
    state = export_state(stack, cwd)
    pending = (state.get("deployment") or {}).get("pending_operations") or []
    if not pending:
        return 0
    for orphan in pending_orphans(state["deployment"]):
        command = ["docker", *(["-H", orphan.host] if orphan.host else []), "rm", "-f", orphan.name]
        removed = subprocess.run(command, capture_output=True, text=True)
        if removed.returncode == 0:
            print(f"recovery: removed {orphan.name} on {orphan.host or 'the default engine'}, whose "
                  "create was interrupted; the update creates it again", file=out)
    for operation in pending:
        print(f"recovery: {operation.get('resource', {}).get('urn', '?')} was interrupted while "
              f"{operation.get('type')}; the update does it again", file=out)
    import_state(stack, cwd, without_pending(state))
    return len(pending)


def recover(stack: str, cwd: str, backend_dir: str | None, out=sys.stderr) -> None:
    """Makes a stack left by a dead update ready for a plain re-run (file backends: a service
    backend judges its own locks)."""
    if backend_dir is None:
        return
    cleared = clear_stale_locks(backend_dir, stack, out)
    if cleared or not lock_files(backend_dir, stack):
        repair_attributes(backend_dir, stack, out)
    # With a live lock, another update runs: its pending operations are its own business.
    if cleared or not lock_files(backend_dir, stack):
        if has_pending(backend_dir, stack):
            resolve_pending(stack, cwd, out)
        if needs_migration(backend_dir, stack):
            migrate_providers(backend_dir, stack, cwd, out)


def backend_directory() -> str | None:
    url = os.environ.get("PULUMI_BACKEND_URL", "")
    return url.removeprefix("file://") if url.startswith("file://") else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bluegreen.delivery.recovery",
                                     description="Clear what a dead `pulumi up` left on a stack.")
    parser.add_argument("--stack", required=True)
    parser.add_argument("--cwd", default=os.getcwd())
    args = parser.parse_args(argv)
    stack = args.stack.rsplit("/", 1)[-1]
    try:
        recover(stack, args.cwd, backend_directory())
    except RuntimeError as error:
        print(f"recovery: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
