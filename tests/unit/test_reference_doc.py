"""docs/reference.md lists exactly the configuration keys the parsers accept.

The keys are read from the parsers' own allowed-key lists (every `Fields(...)` and `.nested(...)`
call), so a key added to a parser without a line in the reference, or a documented key no parser
takes, fails here."""

import ast
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REFERENCE = os.path.join(ROOT, "docs", "reference.md")
STACK_PARSERS = ("components/model/config.py", "components/model/split.py")
MANIFEST_PARSERS = ("components/model/manifest.py",)


def _constants(tree: ast.Module) -> dict[str, list[str]]:
    """Module-level tuples of strings and dicts with string keys, by name."""
    found: dict[str, list[str]] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            value = node.value
            items = value.keys if isinstance(value, ast.Dict) else getattr(value, "elts", [])
            strings = [i.value for i in items if isinstance(i, ast.Constant) and isinstance(i.value, str)]
            if strings:
                found[node.targets[0].id] = strings
    return found


def _strings(node: ast.expr, constants: dict[str, list[str]]) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.Starred) and isinstance(node.value, ast.Name):
        return constants.get(node.value.id, [])
    if isinstance(node, (ast.List, ast.Tuple)):
        return [s for item in node.elts for s in _strings(item, constants)]
    return []


def allowed_keys(paths: tuple[str, ...]) -> set[str]:
    """Every key named in an allowed-key list of these parsers."""
    keys: set[str] = set()
    for path in paths:
        with open(os.path.join(ROOT, path), encoding="utf-8") as handle:
            tree = ast.parse(handle.read(), path)
        constants = _constants(tree)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            if isinstance(func, ast.Name) and func.id == "Fields" and len(node.args) >= 4:
                keys.update(_strings(node.args[3], constants))
            elif isinstance(func, ast.Attribute) and func.attr == "nested" and len(node.args) >= 2:
                keys.update(_strings(node.args[1], constants))
    return keys


def documented_keys(section: str) -> set[str]:
    """The last segment of each key in the first column of the tables under `## {section}`."""
    with open(REFERENCE, encoding="utf-8") as handle:
        text = handle.read()
    start = text.index(f"\n## {section}")
    end = text.find("\n## ", start + 1)
    rows = re.findall(r"^\| `([^`]+)` \|", text[start:end if end > 0 else None], re.MULTILINE)
    return {re.split(r"[.]", row)[-1].split("[")[0] for row in rows}


def test_the_reference_documents_every_stack_key_and_no_other():
    accepted, documented = allowed_keys(STACK_PARSERS), documented_keys("Stack configuration")
    assert not accepted - documented, f"document these keys in docs/reference.md: {sorted(accepted - documented)}"
    assert not documented - accepted, f"docs/reference.md names keys no parser takes: {sorted(documented - accepted)}"


def test_the_reference_documents_every_manifest_key_and_no_other():
    accepted, documented = allowed_keys(MANIFEST_PARSERS), documented_keys("Service manifest")
    assert not accepted - documented, f"document these keys in docs/reference.md: {sorted(accepted - documented)}"
    assert not documented - accepted, f"docs/reference.md names keys no parser takes: {sorted(documented - accepted)}"


def test_the_key_lists_are_found():
    """The AST reading sees the parsers' lists (a refactor that hides them fails loudly)."""
    assert {"drainTimeout", "previewTraffic", "cohorts", "consulGossipKey"} <= allowed_keys(STACK_PARSERS)
    assert {"acceptance", "volume", "dockerfile"} <= allowed_keys(MANIFEST_PARSERS)
