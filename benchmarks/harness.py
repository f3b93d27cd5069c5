"""What every benchmark shares: run a piece of code in a fresh interpreter and read its wall time
and peak RSS, and merge a benchmark's figures into ``benchmarks/results.json``.

Each measurement runs in its own process, so one side's memory never counts against the other's,
and both sides of a comparison are measured in the same run on the same machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# BENCH_RESULTS redirects the file (the smoke run in the tests writes elsewhere).
RESULTS = Path(os.environ.get("BENCH_RESULTS") or ROOT / "benchmarks" / "results.json")

# `setup` runs before the clock starts; `body` is timed. The peak RSS covers the whole process.
_MEASURE = r"""
import json, sys, time
sys.path.insert(0, {root!r})
{setup}
t0 = time.perf_counter()
{body}
seconds = time.perf_counter() - t0
# VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss across exec, so a child of a big
# parent would report the parent's size.
peak_kb = int(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")))
print("\n" + json.dumps({{"seconds": round(seconds, 3), "peak_rss_mb": round(peak_kb / 1024),
                   "extra": globals().get("extra", {{}})}}))
"""


def measure(name: str, body: str, setup: str = "", env: dict | None = None, threads: int = 1) -> dict:
    """Wall seconds of `body` and the process's peak RSS (MB), in a new interpreter."""
    full_env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "OMP_NUM_THREADS": str(threads),
        "OPENBLAS_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        **(env or {}),
    }
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", _MEASURE.format(root=str(ROOT), setup=setup, body=body)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=full_env,
    )
    if proc.returncode != 0:
        raise SystemExit(f"benchmark step {name!r} failed:\n{proc.stderr[-4000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    extra = result.pop("extra") or {}
    result.update(extra)
    print(
        f"  {name:<46} {result['seconds']:>9.3f} s  {result['peak_rss_mb']:>6} MB"
        f"  (process {time.perf_counter() - started:.1f} s)",
        flush=True,
    )
    return result


def record(benchmark: str, figures: dict) -> None:
    """Replace one benchmark's entry in benchmarks/results.json (the others stay)."""
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results[benchmark] = {"measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **figures}
    RESULTS.write_text(json.dumps(dict(sorted(results.items())), indent=2) + "\n")
    print(f"{benchmark}: written to {RESULTS}", flush=True)


def machine() -> dict:
    return {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
