"""The READMEs' examples work as written: every `pulumi up` runs outside a terminal, and the
stack-file service entry parses into what its comments say."""

import os
import re

import pytest
import yaml

from bluegreen.components.model.config import parse_stack_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
READMES = ["README.md", "delivery/README.md", "policies/README.md", "docs/service-teams.md",
           "docs/platform-teams.md", "docs/operations.md"]


def read(path):
    with open(os.path.join(ROOT, path), encoding="utf-8") as handle:
        return handle.read()


def commands(text):
    """Shell lines of fenced blocks, and inline code spans that are commands with arguments."""
    for block in re.findall(r"```(?:sh|bash)\n(.*?)```", text, re.S):
        yield from (line.strip() for line in block.splitlines())
    yield from (span for span in re.findall(r"`([^`\n]+)`", text) if re.search(r"pulumi \w+ -", span))


@pytest.mark.parametrize("path", READMES)
def test_every_pulumi_up_or_destroy_example_runs_outside_a_terminal(path):
    examples = [c for c in commands(read(path)) if re.search(r"\bpulumi (up|destroy|refresh)\b", c)]
    missing = [c for c in examples if "--yes" not in c.split("#")[0]]
    assert missing == [], f"{path}: without --yes these ask for a confirmation, or fail outside a terminal"


def test_readme_has_pulumi_up_examples():
    assert sum("pulumi up --yes" in c for c in commands(read("README.md"))) >= 3
    assert sum("pulumi up --yes" in c for path in READMES for c in commands(read(path))) >= 5


def test_readme_stays_short_and_points_at_every_doc():
    text = read("README.md")
    assert len(text.splitlines()) <= 350
    assert "./bg up" in text and "./bg test" in text
    for path in READMES[1:]:
        assert f"]({path})" in text, f"README does not point at {path}"


def test_links_between_the_docs_resolve():
    for path in READMES:
        for target in re.findall(r"\]\(([^)#:]+\.md)(?:#[^)]*)?\)", read(path)):
            resolved = os.path.normpath(os.path.join(ROOT, os.path.dirname(path), target))
            assert os.path.isfile(resolved), f"{path} links {target}, which does not exist"


def test_the_documented_stack_entry_parses_as_its_comments_say():
    text = read("docs/service-teams.md")
    (block,) = [b for b in re.findall(r"```yaml\n(.*?)```", text, re.S)
                if "bluegreen:services:" in b and "gateTimeout:" in b]
    entry = yaml.safe_load(block)["config"]["bluegreen:services"]
    local = yaml.safe_load(read("stacks/Pulumi.local.yaml"))["config"]
    values = {key.removeprefix("bluegreen:"): value for key, value in local.items()
              if key.startswith("bluegreen:")}
    values["services"] = entry
    (service,) = parse_stack_config("local", values, ROOT).services
    # manifest: relative to the project folder, the local stack's own path
    assert service.manifest == os.path.join(ROOT, "services", "vizconfig", "service.yaml")
    assert entry["vizconfig"]["manifest"] == local["bluegreen:services"]["vizconfig"]["manifest"]
    assert os.path.isfile(service.manifest)
    assert (service.hosts, service.replicas, service.gate_timeout_s, service.live) == (("local",), 1, 60, "blue")
    assert service.colours["blue"].version == "1.0.0" and service.colours["blue"].environment == {}
    assert service.colours["green"].environment == {"FEATURE_CHARTS": "on"}
