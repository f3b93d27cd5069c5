"""Extra links from a task instance to what it produced (the Airflow UI's task page).

Global links, evaluated by the API server from the task's XComs: the return value of the
step (pipeline.steps results name their outputs) and, for a task that failed on bad data,
the ``pipeline_links`` XCom that ``fail_fast_on_bad_data`` pushes (the quarantined delivery,
the failing Data Docs page). A link with nothing behind it is left empty (greyed out).
Local paths become ``/pipeline/artefacts/<path>`` URLs served by the plugin's app on the API
server; S3 objects keep their ``s3://`` URI.
"""

from __future__ import annotations

from typing import Any, ClassVar

from airflow.sdk import BaseOperatorLink


def task_outputs(ti_key) -> dict[str, Any]:
    """The step's return value merged with its pushed links (server side: reads the metadata DB)."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    out: dict[str, Any] = {}
    with create_session() as session:
        for key in ("return_value", "pipeline_links"):
            row = session.execute(
                XComModel.get_many(
                    key=key,
                    run_id=ti_key.run_id,
                    dag_ids=ti_key.dag_id,
                    task_ids=ti_key.task_id,
                    map_indexes=ti_key.map_index,
                ).with_only_columns(XComModel.value)
            ).first()
            if row is None:
                continue
            value = XComModel.deserialize_value(row)
            if isinstance(value, dict):
                out.update(value if key == "return_value" else {f"link:{k}": v for k, v in value.items()})
    return out


def browser_url(uri: str | None) -> str:
    """Local files through the plugin's artefact app on the API server (the UI follows only
    http(s) links); other URIs (s3://) as they are."""
    if not uri or not isinstance(uri, str):
        return ""
    if "://" in uri:
        return uri
    from pipeline_airflow.artefacts_app import url_for

    return url_for(uri)


def _find(value: Any, keys: tuple[str, ...]) -> str | None:
    """First value under any of `keys`, searching nested results (e.g. run_scoring's parts)."""
    if isinstance(value, dict):
        for key in keys:
            if isinstance(value.get(key), str) and value[key]:
                return value[key]
        for nested in value.values():
            found = _find(nested, keys)
            if found:
                return found
    return None


class PipelineLink(BaseOperatorLink):
    keys: ClassVar[tuple[str, ...]] = ()

    def get_link(self, operator, *, ti_key) -> str:
        try:
            return browser_url(_find(task_outputs(ti_key), self.keys))
        except Exception:  # noqa: BLE001 - a link must never break the task page
            return ""


class DataDocsLink(PipelineLink):
    name = "Data Docs (this validation)"
    keys = ("link:failing validation page", "data_docs")


class QuarantineLink(PipelineLink):
    name = "Quarantined delivery"
    keys = ("link:quarantine", "quarantine")


class PredictionsLink(PipelineLink):
    name = "Prediction partition"
    keys = ("predictions",)


class EvaluationReportLink(PipelineLink):
    name = "Evaluation report"
    keys = ("evaluation_report",)


class ModelCardLink(PipelineLink):
    name = "Model card"
    keys = ("model_card",)


class DriftReportLink(PipelineLink):
    name = "Drift report"
    keys = ("drift_report",)


LINKS = [
    DataDocsLink(),
    QuarantineLink(),
    PredictionsLink(),
    EvaluationReportLink(),
    ModelCardLink(),
    DriftReportLink(),
]
