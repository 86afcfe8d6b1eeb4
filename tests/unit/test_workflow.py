"""The delivery workflow: the state passphrase reaches only the merge job (through its
environment); the pull-request job, which runs the pull request's code, gets no passphrase and no
deploying state."""

from __future__ import annotations

import os
import subprocess

import yaml

from bluegreen.delivery import REPO

WORKFLOW = os.path.join(REPO, ".github", "workflows", "delivery.yml")
STATE_ENV = os.path.join(REPO, ".github", "workflows", "state-env.sh")


def workflow() -> dict:
    with open(WORKFLOW, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def job_text(name: str) -> str:
    return yaml.safe_dump(workflow()["jobs"][name])


def test_only_the_merge_job_holds_the_passphrase_through_its_environment():
    data = workflow()
    assert "secrets." not in yaml.safe_dump(data.get("env") or {})
    up = data["jobs"]["up"]
    assert up["if"] == "github.event_name == 'push'"
    assert up["environment"] == "production"
    assert up["env"]["STATE_PASSPHRASE"] == "${{ secrets.PULUMI_CONFIG_PASSPHRASE }}"
    holders = [name for name in data["jobs"] if "PULUMI_CONFIG_PASSPHRASE" in job_text(name)]
    assert holders == ["up"]


def test_the_pull_request_job_has_no_secret_and_no_deploying_state():
    preview = workflow()["jobs"]["preview"]
    text = job_text("preview")
    assert "secrets." not in text and "STATE_BACKEND" not in text
    assert preview["env"] == {"STATE_SCOPE": "pull-request"}
    runs = "\n".join(step.get("run", "") for step in preview["steps"])
    assert "./bg test tests/unit tests/policy -q" in runs
    assert "python -m bluegreen.delivery preview --config-only" in runs
    # The engine's preview decrypts the state: it runs in the merge job, before its up.
    up_runs = "\n".join(step.get("run", "") for step in workflow()["jobs"]["up"]["steps"])
    assert up_runs.index("delivery preview --base") < up_runs.index("pulumi up --yes")


def sourced(tmp_path, **env) -> dict[str, str]:
    """The variables state-env.sh leaves, sourced with `env` on top of an empty environment."""
    script = f". {STATE_ENV}; echo \"backend=$PULUMI_BACKEND_URL\"; " \
             "echo \"passphrase=${PULUMI_CONFIG_PASSPHRASE-(unset)}\""
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True,
                            env={"PATH": os.environ["PATH"], "HOME": str(tmp_path), **env})
    return dict(line.split("=", 1) for line in result.stdout.split("\n") if line)


def test_state_env_in_the_pull_request_scope_drops_the_passphrase_and_the_backend(tmp_path):
    values = sourced(tmp_path, STATE_SCOPE="pull-request", RUNNER_TEMP=str(tmp_path),
                     STATE_PASSPHRASE="s3cret", PULUMI_CONFIG_PASSPHRASE="s3cret",
                     STATE_BACKEND="s3://deploying-state")
    assert values == {"backend": f"file://{tmp_path}/bluegreen-pull-request-state",
                      "passphrase": "(unset)"}
    assert (tmp_path / "bluegreen-pull-request-state").is_dir()


def test_state_env_in_the_merge_job_gives_the_backend_and_the_passphrase(tmp_path):
    values = sourced(tmp_path, STATE_PASSPHRASE="s3cret", STATE_BACKEND="s3://deploying-state")
    assert values == {"backend": "s3://deploying-state", "passphrase": "s3cret"}
