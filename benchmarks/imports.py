"""Fixed costs of a process: `python -m pipeline --help`, and how much of a `score` process on
the demo's ~320-row day is spent importing (``-X importtime``'s total vs the same process's wall time).

    .venv/bin/python benchmarks/imports.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import ROOT, machine, record

sys.path.insert(0, str(ROOT / "tests"))


def wall(cmd: list[str], env: dict, repeats: int = 3) -> tuple[float, str]:
    best, err = float("inf"), ""
    for _ in range(repeats):
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
        best = min(best, time.perf_counter() - t0)
        if proc.returncode:
            raise SystemExit(f"{cmd} failed:\n{proc.stderr[-3000:]}")
        err = proc.stderr
    return best, err


def top_level_imports(importtime_log: str) -> dict[str, float]:
    """Seconds per top-level import in a `-X importtime` log (each line's cumulative time; nested
    imports are indented below their importer, so the top level adds up to the process's imports)."""
    seconds = {}
    for line in importtime_log.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            _, cumulative, name = line.split("|")
            if cumulative.strip().isdigit() and name.startswith(" ") and not name.startswith("  "):
                seconds[name.strip()] = seconds.get(name.strip(), 0.0) + int(cumulative) / 1e6
    return seconds


def score_imports(cmd: list[str], env: dict, repeats: int = 3) -> tuple[float, dict[str, float]]:
    """Wall time and imports of the same process (`-X importtime`), the fastest of `repeats` runs:
    measured in one process, the share cannot be skewed by load that changes between two processes."""
    best: tuple[float, dict[str, float]] = (float("inf"), {})
    for _ in range(repeats):
        t0 = time.perf_counter()
        proc = subprocess.run([cmd[0], "-X", "importtime", *cmd[1:]], env=env, cwd=ROOT, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        if proc.returncode:
            raise SystemExit(f"{cmd} failed:\n{proc.stderr[-3000:]}")
        if seconds < best[0]:
            best = (seconds, top_level_imports(proc.stderr))
    return best


def main(argv: list[str] | None = None) -> dict:
    from conftest import write_params

    from pipeline import steps

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    help_seconds, _ = wall([sys.executable, "-m", "pipeline", "--help"], env)
    print(f"  python -m pipeline --help            {help_seconds:.3f} s", flush=True)
    work = Path(tempfile.mkdtemp(prefix="bench-imports-"))
    params = write_params(
        work, training={"window_days": 8, "holdout_days": 2, "cv_folds": 3, "estimator_params": {"max_iter": 30}}
    )
    steps.run_training("2025-03-01", str(params))
    steps.ingest("2025-03-02", str(params))
    steps.validate("2025-03-02", str(params))
    args = ["--params", str(params), "score", "--date", "2025-03-02"]
    score_seconds, imported = score_imports([sys.executable, "-m", "pipeline", *args], env)
    imports = sum(imported.values())
    heaviest = dict(sorted(((k, round(v, 3)) for k, v in imported.items()), key=lambda kv: -kv[1])[:5])
    print(f"  score of a ~320-row day               {score_seconds:.3f} s, importing {imports:.3f} s", flush=True)
    figures = {
        "machine": machine(),
        "cli_help_seconds": round(help_seconds, 3),
        "score_process_seconds": round(score_seconds, 3),
        "score_import_seconds": round(imports, 3),
        "score_import_share": round(imports / score_seconds, 3),
        "score_heaviest_imports_seconds": heaviest,
        "note": "the fastest of 3 runs; its imports are the sum of its top-level imports as -X importtime reports them",
    }
    figures["acceptance"] = {
        "--help <= 1.5 s": help_seconds <= 1.5,
        "score imports <= 30% of its wall": figures["score_import_share"] <= 0.3,
    }
    record("imports", figures)
    return figures


if __name__ == "__main__":
    main()
