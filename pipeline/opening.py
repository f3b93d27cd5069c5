"""What every step opens first: the settings, checked by the stages that own them, and the storage
they name, once per step."""

from __future__ import annotations

import datetime as dt

from pipeline.core.errors import ConfigError
from pipeline.core.settings import PipelineConfig, load_config
from pipeline.core.storage import Storage, open_storage


def open_pipeline(params: str | None = None, s3_options: dict | None = None) -> tuple[PipelineConfig, Storage]:
    config = settings(params)
    return config, storage_for(config, s3_options)


def settings(params: str | None = None) -> PipelineConfig:
    """The params, parsed, then checked by the stages that own them (column roles, metric and statistic
    names, windows): a mistake fails the step before it reads or writes anything."""
    from pipeline.data import columns
    from pipeline.model import checks
    from pipeline.monitoring import policy, stats

    config = load_config(params)
    problems = columns.check_settings(config) + checks.check_settings(config) + stats.check_settings(config.monitoring)
    if problems := problems + policy.check_settings(config.monitoring.policy):
        raise ConfigError("; ".join(problems))
    return config


def params_schema() -> dict:
    """The JSON schema of params.yaml (editors validate against params.schema.json)."""
    from pipeline.core.settings import schema

    return schema()


def storage_for(config: PipelineConfig, s3_options: dict | None = None) -> Storage:
    """Storage at the configured root, with the configured S3 timeouts and retry budget."""
    st = config.storage
    budget = {
        "connect_timeout": st.connect_timeout_seconds,
        "read_timeout": st.read_timeout_seconds,
        "max_attempts": st.max_attempts,
    }
    return open_storage(
        st.root,
        {**budget, **(s3_options or {})},
        row_group_rows=st.row_group_rows,
        lease_seconds=st.publish_lease_seconds,
        wait_seconds=st.publish_wait_seconds,
    )


def as_date(value: str | dt.date) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value)[:10])
    except ValueError as exc:
        raise ValueError(f"not a date (YYYY-MM-DD): {value!r}") from exc
