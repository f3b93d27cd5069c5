"""Settings of storage, DVC, resources, maintenance, alerts, the UI and the demo."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from .types import Flag, Number, Positive, Section, Text, bounded

Seconds = Annotated[Number, bounded(lambda v: v > 0, "must be > 0")]


class StorageConfig(Section):
    root: Text = "storage"
    # Airflow connection with the S3 endpoint and credentials (required by the DAGs when storage or
    # the DVC remote is on S3; never a fallback); null: boto3's chain, as the CLI always uses.
    aws_conn_id: Text | None = "aws_default"
    connect_timeout_seconds: Seconds = 5.0  # a hung endpoint fails within attempts x (connect + read)
    read_timeout_seconds: Seconds = 15.0
    max_attempts: Annotated[Positive, bounded(lambda v: v <= 10, "must be between 1 and 10")] = 3
    row_group_rows: Positive = 100_000  # Parquet row group: the unit of mapped scoring's ranges
    publish_lease_seconds: Number = 120.0  # a writer killed mid-publish frees the partition after this
    publish_wait_seconds: Number = 600.0  # a second writer waits this long for the lease (then retries)


class DvcConfig(Section):
    enabled: Flag = True
    repo_dir: Text = "."
    snapshot_dir: Text = "data"  # what data.dvc tracks, inside repo_dir
    push: Flag = True
    remote_url: Text | None = None  # null: the repo's default remote; s3:// uses the storage's credentials


class ResourcesConfig(Section):
    threads_per_task: Positive | None = None  # null: cores / tasks running at once on the machine


class MaintenanceConfig(Section):
    gc_min_age_hours: Number = 24.0  # staging and unreferenced objects older than this are removed


class AlertsConfig(Section):
    """On-call alerts: channels are Airflow connections; a missing one is skipped (still logged)."""

    email_to: tuple[Text, ...] = ()
    email_from: Text = "pipeline-alerts@localhost"
    smtp_conn_id: Text = "smtp_alerts"
    webhook_conn_id: Text = "alerts_webhook"  # Slack-compatible JSON is POSTed to it
    dedupe_minutes: Number = 360.0  # one alert per cause within this window (then a count)
    ui_base_url: Text = "http://127.0.0.1:8080"
    scoring_deadline_hours: Number | None = 30.0  # day D's scoring unfinished by D + this alerts


class UiConfig(Section):
    serve_data_files: Flag = False  # also serve rows and model files to authenticated users


class DemoConfig(Section):
    train_as_of: dt.date | None = None
    score_days: tuple[dt.date, ...] = ()
    drift_scenario: Text = "covariate_shift"
    drift_days: tuple[dt.date, ...] = ()
    drift_as_of: dt.date | None = None
