"""The GitHub workflow for forks runs what our CI runs: each `run:` step is a make target that exists."""

from __future__ import annotations

import re

import yaml
from conftest import ROOT


def _make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return {m.group(1) for m in re.finditer(r"^([A-Za-z][\w-]*):", text, flags=re.M)}


def test_workflow_steps_are_make_targets_and_match_ci_run():
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())
    (job,) = workflow["jobs"].values()
    commands = [step["run"].strip() for step in job["steps"] if "run" in step]
    assert commands, "the workflow runs nothing"
    targets = _make_targets()
    for command in commands:
        match = re.fullmatch(r"make ([\w-]+)", command)
        assert match and match.group(1) in targets, f"{command!r} is not a target of the Makefile"
    # Same order as .ci/run: lint first, then the tests; the stack test may not skip.
    ci_run = (ROOT / ".ci" / "run").read_text()
    assert [c.split()[1] for c in commands] == re.findall(r"^make ([\w-]+)", ci_run, flags=re.M)
    # CI runs every test, with coverage: `make test` may leave the slow ones out, the CI target may not.
    recipe = (ROOT / "Makefile").read_text().split(f"\n{commands[-1].split()[1]}:", 1)[1].split("\n\n", 1)[0]
    assert "pytest" in recipe and "--cov" in recipe and not re.search(r"\s-[mk]\s+[\"']", recipe), recipe
    assert job["env"]["PIPELINE_TEST_STACK"] == "required"
    assert {"postgres", "redis"} <= set(job["services"])
    assert "POSTGRES_HOST_AUTH_METHOD" in job["services"]["postgres"]["env"]  # trust auth, like our machines


def test_pre_commit_runs_what_make_lint_runs():
    hooks = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())["repos"][0]["hooks"]
    lint = (ROOT / "Makefile").read_text().split("\nlint:", 1)[1].split("\n\n", 1)[0]
    for tool in ("ruff check", "ruff format", "mypy", "lint-imports", "scripts/check_files.py"):
        assert tool in lint, f"make lint does not run {tool}"
        assert any(tool.split()[-1] in h["entry"] for h in hooks), f"pre-commit does not run {tool}"
