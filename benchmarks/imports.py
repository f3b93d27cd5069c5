"""Fixed costs of a process: `python -m pipeline --help`, and how much of a `score` process on
the demo's ~320-row day is spent importing (``-X importtime``'s total vs the process's wall time).

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


MODULES_OF_A_RUN = """
import json, sys
from pipeline.cli import main
code = main(sys.argv[1:])
print(json.dumps(sorted(m for m in sys.modules if "." not in m and not m.startswith("_"))))
sys.exit(code)
"""
IMPORT_ONLY = """
import importlib, json, sys
for name in json.loads(sys.argv[1]):
    try:
        importlib.import_module(name)
    except Exception:
        pass
"""


def import_seconds(cmd_args: list[str], env: dict) -> float:
    """The wall time of importing what the command imports, and nothing else: the top-level
    modules a run of it has loaded, imported by a fresh interpreter (best of 3)."""
    proc = subprocess.run(
        [sys.executable, "-c", MODULES_OF_A_RUN, *cmd_args], env=env, cwd=ROOT, capture_output=True, text=True
    )
    if proc.returncode:
        raise SystemExit(f"{cmd_args} failed:\n{proc.stderr[-3000:]}")
    modules = proc.stdout.strip().splitlines()[-1]
    seconds, _ = wall([sys.executable, "-c", IMPORT_ONLY, modules], env)
    return seconds


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
    score_seconds, _ = wall([sys.executable, "-m", "pipeline", *args], env)
    imports = import_seconds(args, env)
    print(f"  score of a ~320-row day               {score_seconds:.3f} s, importing {imports:.3f} s", flush=True)
    figures = {
        "machine": machine(),
        "cli_help_seconds": round(help_seconds, 3),
        "score_process_seconds": round(score_seconds, 3),
        "score_import_seconds": round(imports, 3),
        "score_import_share": round(imports / score_seconds, 3),
        "note": "best of 3 wall times; imports: a fresh interpreter importing the top-level modules a score run loaded",
    }
    figures["acceptance"] = {
        "--help <= 1.5 s": help_seconds <= 1.5,
        "score imports <= 30% of its wall": figures["score_import_share"] <= 0.3,
    }
    record("imports", figures)
    return figures


if __name__ == "__main__":
    main()
