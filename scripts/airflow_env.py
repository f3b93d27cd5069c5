"""Environment for running this project's DAGs locally (SQLite metadata DB in .airflow/).

Shared by `make demo`, the end-to-end tests and anyone calling the DAGs by hand:
`eval "$(python scripts/airflow_env.py)"` prints the exports.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOISY_LIBRARIES = (
    "great_expectations=WARNING botocore=WARNING boto3=WARNING s3transfer=WARNING dvc=WARNING "
    "matplotlib=WARNING urllib3=WARNING numexpr=WARNING"
)


def airflow_env(home: str | os.PathLike | None = None) -> dict[str, str]:
    home = Path(home or os.environ.get("AIRFLOW_HOME") or ROOT / ".airflow")
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        # Task logs carry the pipeline's lines: libraries speak up only for warnings.
        "AIRFLOW__LOGGING__NAMESPACE_LEVELS": NOISY_LIBRARIES,
        # A 2-core machine: a few task processes, not 32 (Airflow's default parallelism).
        "AIRFLOW__CORE__PARALLELISM": os.environ.get("AIRFLOW__CORE__PARALLELISM", "4"),
        "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": os.environ.get("AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG", "4"),
        # The documented local UI listens on loopback only.
        "AIRFLOW__API__HOST": "127.0.0.1",
        "GX_ANALYTICS_ENABLED": "false",
        "PIPELINE_PARAMS": os.environ.get("PIPELINE_PARAMS", str(ROOT / "params.yaml")),
    }


def apply(home: str | os.PathLike | None = None) -> dict[str, str]:
    env = airflow_env(home)
    for key, value in env.items():
        if key == "AIRFLOW_HOME" and home is None and os.environ.get("AIRFLOW_HOME"):
            continue
        os.environ[key] = value
    return env


if __name__ == "__main__":
    for key, value in airflow_env().items():
        print(f"export {key}={value}")
