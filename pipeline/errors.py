"""The pipeline's error types that mean "this will not fix itself on retry".

Bad data, bad config and bad artefacts derive from :class:`PipelineError`, so the
Airflow glue fails the task at once by catching this one base class, without
importing every stage. Storage errors (``storage.StorageError``) are not
PipelineErrors: they may be transient and keep their retries.
"""

from __future__ import annotations


class PipelineError(Exception):
    """Bad data, config or artefact: the message names what and where; retrying will not help.

    `links` (name -> URI) point at what a person should open: the quarantined delivery, the
    failing Data Docs page, a report. Alerts and the Airflow UI show them."""

    def __init__(self, *args, links: dict[str, str] | None = None):
        super().__init__(*args)
        self.links = dict(links or {})


class MonitoringError(PipelineError, ValueError):
    """The drift monitor cannot run (no champion, no reference profile, ...)."""


class SimulationError(PipelineError, ValueError):
    """A drift scenario cannot be simulated as asked (unknown scenario or column)."""


class ArtefactError(PipelineError, ValueError):
    """A stored artefact (manifest, record, model) is unreadable; the message names the file."""


class ArtefactMissing(PipelineError, FileNotFoundError):
    """A stored artefact the step needs does not exist; the message names it."""


class StorageFull(PipelineError, OSError):
    """The storage has no space left; nothing was published (an operator must free space)."""


class SignatureError(PipelineError, ValueError):
    """A model version has no valid signature (or no key is configured to check one)."""
