"""Recovery after a killed update: stale locks and interrupted operations."""

import json
import os

from bluegreen.components.consul.api import is_leaderless
from bluegreen.delivery import recovery
from bluegreen.delivery.recovery import Lock, Orphan, pending_orphans, stale_locks, without_pending


def test_only_locks_of_dead_processes_on_this_machine_are_stale():
    locks = [Lock("a.json", 100, "here"), Lock("b.json", 200, "here"), Lock("c.json", 300, "there")]
    assert stale_locks(locks, "here", alive=lambda pid: pid == 200) == [locks[0]]


def test_lock_files_are_found_per_stack(tmp_path):
    lock_dir = tmp_path / ".pulumi" / "locks" / "organization" / "bluegreen" / "production"
    lock_dir.mkdir(parents=True)
    (lock_dir / "x.json").write_text(json.dumps({"pid": 4242, "hostname": "vm", "username": "root"}))
    (tmp_path / ".pulumi" / "locks" / "organization" / "bluegreen" / "platform").mkdir()
    files = recovery.lock_files(str(tmp_path), "production")
    assert [recovery.read_lock(f) for f in files] == [Lock(files[0], 4242, "vm")]
    assert recovery.lock_files(str(tmp_path), "platform") == []


def test_a_stale_lock_is_removed_and_a_live_one_kept(tmp_path, monkeypatch):
    lock_dir = tmp_path / ".pulumi" / "locks" / "organization" / "bluegreen" / "s"
    lock_dir.mkdir(parents=True)
    monkeypatch.setattr(recovery.socket, "gethostname", lambda: "vm")
    monkeypatch.setattr(recovery, "pid_alive", lambda pid: pid == 1)
    (lock_dir / "dead.json").write_text(json.dumps({"pid": 999999, "hostname": "vm"}))
    (lock_dir / "live.json").write_text(json.dumps({"pid": 1, "hostname": "vm"}))
    cleared = recovery.clear_stale_locks(str(tmp_path), "s", out=open("/dev/null", "w"))
    assert [c.pid for c in cleared] == [999999]
    assert sorted(p.name for p in lock_dir.iterdir()) == ["live.json"]


DEPLOYMENT = {
    "resources": [
        {"urn": "urn:pulumi:s::p::pulumi:providers:docker::s-host-lab2", "id": "abc",
         "type": "pulumi:providers:docker", "inputs": {"host": "ssh://root@10.250.77.12"}},
    ],
    "pending_operations": [
        {"type": "creating", "resource": {
            "urn": "urn:c", "type": "docker:index/container:Container",
            "provider": "urn:pulumi:s::p::pulumi:providers:docker::s-host-lab2::abc",
            "inputs": {"name": "bluegreen-prod-vizconfig-green-lab2-0"}}},
        {"type": "updating", "resource": {"urn": "urn:alias", "type": "pulumi-python:dynamic:Resource"}},
        {"type": "creating", "resource": {"urn": "urn:key", "type": "pulumi-python:dynamic:Resource"}},
    ],
}


def test_interrupted_container_creates_are_found_with_their_host():
    assert pending_orphans(DEPLOYMENT) == [
        Orphan("urn:c", "bluegreen-prod-vizconfig-green-lab2-0", "ssh://root@10.250.77.12")]


def test_pending_operations_are_dropped_and_the_rest_kept():
    state = {"version": 3, "deployment": DEPLOYMENT}
    cleaned = without_pending(state)
    assert "pending_operations" not in cleaned["deployment"]
    assert cleaned["deployment"]["resources"] == DEPLOYMENT["resources"]
    assert "pending_operations" in state["deployment"]  # the input is not changed


def test_has_pending_reads_the_checkpoint(tmp_path):
    stacks = tmp_path / ".pulumi" / "stacks" / "bluegreen"
    stacks.mkdir(parents=True)
    (stacks / "a.json").write_text(json.dumps({"checkpoint": {"latest": {"pending_operations": [{}]}}}))
    (stacks / "b.json").write_text(json.dumps({"checkpoint": {"latest": {"resources": []}}}))
    assert recovery.has_pending(str(tmp_path), "a")
    assert not recovery.has_pending(str(tmp_path), "b")
    assert not recovery.has_pending(str(tmp_path), "never-deployed")


def test_a_leader_election_is_waited_out_other_errors_are_not():
    assert is_leaderless(500, "No cluster leader")
    assert is_leaderless(500, "rpc error making call: No cluster leader")
    assert is_leaderless(500, "rpc error getting client: failed to get conn: dial tcp "
                              "10.250.77.11:0->10.250.77.13:29300: connect: connection refused")
    assert not is_leaderless(500, "Permission denied")
    assert not is_leaderless(403, "ACL not found")


def test_a_checkpoint_sidecar_left_empty_by_a_kill_is_removed(tmp_path):
    stacks = tmp_path / ".pulumi" / "stacks" / "bluegreen"
    stacks.mkdir(parents=True)
    (stacks / "s.json").write_text("{}")
    (stacks / "s.json.attrs").write_text("")
    (stacks / "t.json.attrs").write_text('{"user.cache_control": ""}')
    removed = recovery.repair_attributes(str(tmp_path), "s", out=open("/dev/null", "w"))
    assert [os.path.basename(p) for p in removed] == ["s.json.attrs"]
    assert recovery.repair_attributes(str(tmp_path), "t", out=open("/dev/null", "w")) == []
    assert (stacks / "t.json.attrs").exists() and (stacks / "s.json").exists()


def test_a_zombie_is_not_alive():
    import os
    import time
    from bluegreen.delivery.recovery import pid_alive
    child = os.fork()
    if child == 0:
        os._exit(0)
    try:
        for _ in range(100):   # exited, not yet reaped: a zombie
            with open(f"/proc/{child}/stat", encoding="ascii") as handle:
                if handle.read().rsplit(")", 1)[-1].split()[0] == "Z":
                    break
            time.sleep(0.01)
        assert not pid_alive(child)
        assert pid_alive(os.getpid())
    finally:
        os.waitpid(child, 0)
