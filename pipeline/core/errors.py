"""Every error the pipeline raises, in one module, so the Airflow glue maps them without importing
a stage. Each class says which kind of alert it raises (`kind`: bad_data, config, artefact, storage, freshness, monitoring),
which picks the runbook on-call reads; a subclass inherits its parent's.

Bad data, bad config and bad artefacts derive from :class:`PipelineError`: the task fails at once,
without retries. Storage errors (:class:`StorageError`) are not PipelineErrors: they may be
transient and keep their retries (except :class:`PartitionNotFound`, which is both).
"""

from __future__ import annotations


class PipelineError(Exception):
    """Bad data, config or artefact: the message names what and where; retrying will not help.

    `links` (name -> URI) point at what a person should open: the quarantined delivery, the
    failing Data Docs page, a report. Alerts and the Airflow UI show them."""

    kind = "bad_data"

    def __init__(self, *args, links: dict[str, str] | None = None):
        super().__init__(*args)
        self.links = dict(links or {})


class StaleData(PipelineError):
    """A zone (deliveries, labels, predictions, champion, drift runs) is behind its freshness limit."""

    kind = "freshness"


class MonitoringFindings(PipelineError):
    """The weekly drift run found what on-call must see: a data-quality break, a segment breach, a
    retraining it could not start (each named, with the report)."""

    kind = "monitoring"


class MonitoringError(PipelineError, ValueError):
    """The drift monitor cannot run (no champion, no reference profile, ...)."""

    kind = "artefact"


class SimulationError(PipelineError, ValueError):
    """A drift scenario cannot be simulated as asked (unknown scenario or column)."""

    kind = "config"


class ArtefactError(PipelineError, ValueError):
    """A stored artefact (manifest, record, model) is unreadable; the message names the file."""

    kind = "artefact"


class ArtefactMissing(PipelineError, FileNotFoundError):
    """A stored artefact the step needs does not exist; the message names it."""

    kind = "artefact"


class StorageFull(PipelineError, OSError):
    """The storage has no space left; nothing was published (an operator must free space)."""

    kind = "storage"


class SignatureError(PipelineError, ValueError):
    """A model version has no valid signature (or no key is configured to check one)."""

    kind = "artefact"


class StorageError(RuntimeError):
    """A storage operation failed or found something it cannot accept."""

    kind = "storage"


class StorageUnavailable(StorageError):
    """The storage did not answer as it should (endpoint down, timeout, throttling, denied): one line
    naming the object and the cause. Transient as far as the pipeline knows: tasks retry it."""


class StorageCredentialsMissing(StorageError):
    """The configured credentials (an Airflow connection) could not be resolved; nothing falls back
    to ambient credentials. Retried like other storage errors (a secrets backend may be down)."""


class PreconditionFailed(StorageError):
    """A conditional write lost: the object changed since it was read (another writer won)."""


class PublishConflict(StorageError):
    """Another writer holds the partition's publish lease (or took it over): transient, retry."""


class PartitionNotFound(StorageError, PipelineError):
    """No committed partition (no manifest) at that key."""

    kind = "artefact"


class ConfigError(PipelineError, ValueError):
    """The params file is missing, malformed or inconsistent."""

    kind = "config"


class SourceError(PipelineError, ValueError):
    """The source cannot be read or a value does not fit its column."""


class NoDelivery(SourceError):
    """Nothing was delivered for that day."""


class DeliveryTooLarge(SourceError):
    """A delivery over dataset.source.max_bytes or max_rows (found while streaming it)."""


class OutsideLandingArea(SourceError):
    """A delivered file resolves (through '..' or a symlink) outside the landing area."""


class ArrivalEventError(SourceError):
    """An arrival event (the landing area's asset event) does not name a list of real days."""


class ContractError(ConfigError):
    """The params and the stored contract disagree, or the contract cannot be resolved."""


class IngestError(PipelineError, ValueError):
    """The day's delivery could not be ingested; the message names the problem."""


class LabelsNotAvailable(IngestError):
    """Labels for that day are not due yet."""


class NoRowsForDay(IngestError):
    """The source has no rows for that day."""


class LabelsRejected(IngestError):
    """A day's labels broke the label contract; they were quarantined, the committed labels stay."""


class ValidationFailed(PipelineError, ValueError):
    """A batch broke its expectation suite; the message names the failed expectations."""


class SnapshotError(PipelineError, ValueError):
    """The training window cannot be assembled; the message says which days and why."""


class RegistryError(PipelineError, RuntimeError):
    """A registry operation was refused; the message says why."""

    kind = "artefact"
