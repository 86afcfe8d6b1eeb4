"""toolchain/: version checks, and build.sh using installed tools as they are (with stand-in
tools on PATH and a stand-in `go` that records what it was asked to build)."""

import importlib.util
import os
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.join(ROOT, "toolchain", "build.sh")
PINS = dict(line.split("=", 1) for line in open(os.path.join(ROOT, "toolchain", "versions.env"))
            if "=" in line and not line.startswith("#"))
PULUMI, CONSUL, CONSUL_TEMPLATE = (PINS[k].strip() for k in
                                   ("PULUMI_VERSION", "CONSUL_VERSION", "CONSUL_TEMPLATE_VERSION"))

_spec = importlib.util.spec_from_file_location("toolchain_versions",
                                               os.path.join(ROOT, "toolchain", "versions.py"))
versions = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(versions)


@pytest.mark.parametrize("found, pinned, expected", [
    ("v3.259.0", "3.259.0", True),
    ("v3.260.0\n", "3.259.0", True),
    ("v4.0.0", "3.259.0", True),
    ("v3.258.9", "3.259.0", False),
    ("v3.99.0", "3.259.0", False),            # numeric, not text, comparison
    ("v3.259.0-alpha.1", "3.259.0", False),   # a pre-release ranks below its release
    ("v3.260.0-dev.0", "3.259.0", True),
    ("v3.259.0+dirty", "3.259.0", True),
    ("pulumi: command not found", "3.259.0", False),
    ("", "3.259.0", False),
])
def test_at_least(found, pinned, expected):
    assert versions.at_least(found, pinned) is expected


@pytest.mark.parametrize("found, expected", [
    ("Consul v1.16.3\nRevision 1a2b3c\nProtocol 2 spoken by default", True),
    ("consul-template v1.16.3 (abc1234)", True),
    ("Consul v1.16.30", False),
    ("Consul v1.17.0", False),
    ("Consul v1.16.3-dev", False),
    ("Consul v1.16.2", False),
])
def test_exactly(found, expected):
    assert versions.exactly(found, "1.16.3") is expected


def test_prerelease_parts_compare_as_semver_says():
    assert versions.parse("1.0.0-alpha") < versions.parse("1.0.0-alpha.1") < versions.parse("1.0.0-beta")
    assert versions.parse("1.0.0-beta.2") < versions.parse("1.0.0-beta.11") < versions.parse("1.0.0")


def test_command_line_exit_codes():
    script = os.path.join(ROOT, "toolchain", "versions.py")
    run = lambda *args: subprocess.run(["python3", script, *args], capture_output=True).returncode
    assert run("at-least", "v3.300.0", "3.259.0") == 0
    assert run("at-least", "v3.1.0", "3.259.0") == 1
    assert run("exactly", "Consul v1.16.3", "1.16.3") == 0
    assert run("sideways", "1", "2") == 2


@pytest.mark.parametrize("stack", ["local", "platform"])
def test_the_stacks_name_the_platform_images_the_bootstrap_builds(stack):
    # The bootstrap tags what it builds with the pins; a stack naming another tag would run an
    # image another checkout built on the same engine.
    import yaml
    with open(os.path.join(ROOT, "stacks", f"Pulumi.{stack}.yaml"), encoding="utf-8") as handle:
        platform = yaml.safe_load(handle)["config"]["bluegreen:platform"]
    assert platform["consul"]["image"] == f"bluegreen/consul:{PINS['CONSUL_IMAGE_VERSION'].strip()}"
    assert platform["proxy"]["image"] == f"bluegreen/proxy:{PINS['PROXY_IMAGE_VERSION'].strip()}"
    assert platform["prometheus"]["image"] == \
        f"bluegreen/prometheus:{PINS['PROMETHEUS_IMAGE_VERSION'].strip()}"


def executable(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        handle.write("#!/bin/sh\n" + text + "\n")
    os.chmod(path, 0o755)
    return path


class Sandbox:
    """A cache, an installed-tools folder and a `go` that logs its arguments; `go build -o X`
    writes a stand-in X, `go mod download -json` answers with a stand-in pulumi sdk module."""

    def __init__(self, tmp_path):
        self.cache = tmp_path / "cache"
        self.installed = tmp_path / "installed"
        self.go_log = tmp_path / "go.log"
        sdk = tmp_path / "sdk"
        executable(str(sdk / "python" / "cmd" / "pulumi-language-python-exec"), "exit 0")
        executable(str(sdk / "python" / "dist" / "pulumi-resource-pulumi-python"), "exit 0")
        executable(str(tmp_path / "go-bin" / "go"), f"""
echo "$*" >> '{self.go_log}'
case "$1 $2" in
  "mod download") echo '{{"Dir": "{sdk}"}}' ;;
  "build "*) while [ $# -gt 0 ]; do
               if [ "$1" = -o ]; then printf '#!/bin/sh\\necho built\\n' > "$2"; chmod +x "$2"; fi
               shift
             done ;;
  *) echo "go $*: not available here" >&2; exit 97 ;;
esac""")
        self.path = f"{tmp_path / 'go-bin'}:{self.installed}:/usr/local/bin:/usr/bin:/bin"

    def tool(self, name, output, folder=None):
        return executable(str((folder or self.installed) / name), f"echo '{output}'")

    def build(self, *tools):
        return subprocess.run(["bash", BUILD, *tools], capture_output=True, text=True, timeout=60,
                              env={"PATH": self.path, "HOME": str(self.cache.parent),
                                   "BLUEGREEN_CACHE": str(self.cache)})

    def go_calls(self):
        return self.go_log.read_text().splitlines() if self.go_log.exists() else []

    def bin(self, name):
        return self.cache / "bin" / name


@pytest.fixture
def sandbox(tmp_path):
    return Sandbox(tmp_path)


def test_an_installed_pulumi_and_its_language_host_are_used_as_they_are(sandbox):
    pulumi = sandbox.tool("pulumi", "v3.300.1")
    host = sandbox.tool("pulumi-language-python", "host")
    result = sandbox.build("pulumi", "language-python")
    assert result.returncode == 0, result.stderr
    assert os.path.realpath(sandbox.bin("pulumi")) == pulumi
    # Nothing of ours on PATH shadows the language host beside the installed CLI.
    assert not sandbox.bin("pulumi-language-python").exists()
    assert sandbox.go_calls() == []
    assert f"using {host}" in result.stderr


def test_an_installed_pulumi_without_a_language_host_gets_ours_beside_a_copy(sandbox):
    pulumi = sandbox.tool("pulumi", f"v{PULUMI}")
    result = sandbox.build("pulumi", "language-python")
    assert result.returncode == 0, result.stderr
    home = os.path.dirname(os.path.realpath(sandbox.bin("pulumi")))
    assert home.startswith(str(sandbox.cache / "tools" / "pulumi-installed-"))
    with open(os.path.join(home, "pulumi")) as copy, open(pulumi) as original:
        assert copy.read() == original.read()
    for name in ("pulumi-language-python", "pulumi-language-python-exec", "pulumi-resource-pulumi-python"):
        assert os.path.isfile(os.path.join(home, name)), name
    # Only the language host was compiled, not the CLI.
    builds = [c for c in sandbox.go_calls() if c.startswith("build")]
    assert len(builds) == 1 and builds[0].split()[-2].endswith("/pulumi-language-python"), builds


def test_an_older_installed_pulumi_is_not_used(sandbox):
    sandbox.tool("pulumi", "v3.100.0")
    sandbox.tool("pulumi-language-python", "host")
    result = sandbox.build("pulumi")
    assert f"is not at or above {PULUMI}" in result.stderr
    assert any(c.startswith("mod download") and "pulumi/pkg/v3@v" + PULUMI in c for c in sandbox.go_calls())


@pytest.mark.parametrize("tool, output, pinned", [
    ("consul", f"Consul v{CONSUL}\nRevision 0", CONSUL),
    ("consul-template", f"consul-template v{CONSUL_TEMPLATE} (0000000)", CONSUL_TEMPLATE),
])
def test_an_installed_consul_or_consul_template_at_the_pin_is_used(sandbox, tool, output, pinned):
    path = sandbox.tool(tool, output)
    result = sandbox.build(tool)
    assert result.returncode == 0, result.stderr
    assert os.path.realpath(sandbox.bin(tool)) == path
    assert sandbox.go_calls() == []


@pytest.mark.parametrize("tool, output, module", [
    ("consul", "Consul v1.22.0", f"github.com/hashicorp/consul@v{CONSUL}"),   # newer, and under the BSL
    ("consul-template", "consul-template v0.42.0 (0000000)",
     f"github.com/hashicorp/consul-template@v{CONSUL_TEMPLATE}"),
])
def test_an_installed_consul_or_consul_template_at_another_version_is_not_used(sandbox, tool, output,
                                                                               module):
    path = sandbox.tool(tool, output)
    result = sandbox.build(tool)
    assert "the platform image is built from exactly" in result.stderr
    assert any(module in call for call in sandbox.go_calls()), sandbox.go_calls()
    assert os.path.realpath(sandbox.bin(tool)) != path
