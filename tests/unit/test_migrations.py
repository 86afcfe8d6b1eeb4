"""A state written by 0.3.0 (providers pickled under the top-level `components.*` modules) brought
to the `bluegreen.*` import path, as `recovery.recover` does before an update."""

import base64
import copy
import json
import os
import subprocess
import sys

from pulumi.dynamic.dynamic import serialize_provider

from bluegreen.components.consul.health_gate import _HealthGateProvider
from bluegreen.delivery import migrations, recovery

# What 0.3.0 stored as a health gate's `__provider` (dill, protocol 4, the class by reference).
LEGACY_GATE = base64.b64encode(
    b"\x80\x04\x95<\x00\x00\x00\x00\x00\x00\x00\x8c\x1dcomponents.consul.health_gate\x94"
    b"\x8c\x13_HealthGateProvider\x94\x93\x94)\x81\x94.").decode()


def secret(value: str) -> dict:
    """A secret as `pulumi stack export --show-secrets` writes it (the SDK stores providers so)."""
    return {migrations.SECRET_SIG: migrations.SECRET_VALUE, "plaintext": json.dumps(value)}


def deployment(provider: str) -> dict:
    gate = {"urn": "urn:pulumi:s::bluegreen::bluegreen:consul:HealthGate::s-gate",
            "inputs": {"__provider": secret(provider), "colour": "blue"},
            "outputs": {"__provider": provider, "colour": "blue", "passing": True}}
    container = {"urn": "urn:pulumi:s::bluegreen::docker:index/container:Container::s-c",
                 "inputs": {"name": "c"}, "outputs": {"name": "c", "__provider": "not base64 ~"}}
    return {"resources": [gate, container],
            "pending_operations": [{"type": "updating", "resource": copy.deepcopy(gate)}]}


def test_a_legacy_provider_is_recognised_and_a_current_one_is_not():
    assert migrations.is_legacy(LEGACY_GATE)
    assert not migrations.is_legacy(serialize_provider(_HealthGateProvider()))
    assert migrations.is_legacy(secret(LEGACY_GATE))
    assert not migrations.is_legacy("not base64 ~") and not migrations.is_legacy(None)


def test_the_rewritten_provider_is_the_one_a_current_program_pickles():
    assert migrations.migrated(LEGACY_GATE) == serialize_provider(_HealthGateProvider())


def test_migrate_rewrites_inputs_outputs_and_pending_and_nothing_else():
    state = deployment(LEGACY_GATE)
    assert migrations.migrate(state) == 4   # the gate's inputs and outputs, twice (pending too)
    current = serialize_provider(_HealthGateProvider())
    gate = state["resources"][0]
    assert gate["inputs"] == {"__provider": secret(current), "colour": "blue"}   # still a secret
    assert gate["outputs"] == {"__provider": current, "colour": "blue", "passing": True}
    assert state["resources"][1]["outputs"] == {"name": "c", "__provider": "not base64 ~"}
    assert migrations.migrate(state) == 0


def test_the_migrated_provider_loads_where_the_old_modules_do_not_exist(tmp_path):
    """As the dynamic provider does on a delete: in a process that has only `bluegreen`."""
    load = ("import base64, sys, dill\n"
            "try:\n    import components\nexcept ImportError:\n    pass\n"
            "else:\n    sys.exit('components is importable here')\n"
            "print(type(dill.loads(base64.b64decode(sys.argv[1]))).__module__)\n")
    for provider, expected in ((migrations.migrated(LEGACY_GATE), 0), (LEGACY_GATE, 1)):
        done = subprocess.run([sys.executable, "-c", load, provider], cwd=tmp_path,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == expected, done.stderr
    assert done.stdout == "" and "No module named 'components'" in done.stderr
    done = subprocess.run([sys.executable, "-c", load, migrations.migrated(LEGACY_GATE)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "bluegreen.components.consul.health_gate"


def checkpoint(backend, stack: str, latest: dict) -> None:
    folder = backend / ".pulumi" / "stacks" / "bluegreen"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stack}.json").write_text(json.dumps({"checkpoint": {"latest": latest}}))


def test_recover_checks_a_stack_once_with_its_secrets_shown_and_imports_only_a_change(tmp_path, monkeypatch):
    exports, imported = [], []

    def export(stack, cwd, show_secrets=False):
        exports.append(show_secrets)
        return {"deployment": deployment(LEGACY_GATE)}

    monkeypatch.setattr(recovery, "export_state", export)
    monkeypatch.setattr(recovery, "import_state", lambda stack, cwd, state: imported.append(state))
    checkpoint(tmp_path, "s", {"resources": []})
    with open(os.devnull, "w", encoding="utf-8") as quiet:
        recovery.recover("s", str(tmp_path), str(tmp_path), out=quiet)
        recovery.recover("s", str(tmp_path), str(tmp_path), out=quiet)
    assert exports == [True] and len(imported) == 1
    assert migrations.migrate(imported[0]["deployment"]) == 0


def test_a_stack_without_a_checkpoint_needs_nothing(tmp_path):
    assert not recovery.needs_migration(str(tmp_path), "new")
