"""One storage layer addressed by URI: a local directory or ``s3://bucket/prefix``.

Keys are POSIX-style paths relative to the storage root (``raw/credit/dt=2025-01-01``).

Partitions are published atomically. A writer fills a local *staging directory*
and then calls :meth:`Storage.publish_partition`; the backend publishes it:

* ``local.py``: swapped into place with one rename;
* ``s3.py``: under the partition's lease, the manifest written conditionally as the
  commit point (``publish.py``, the protocol for stores without rename).

Modules: ``backend.py`` (the protocol every backend follows), ``local.py``, ``s3.py``,
``publish.py``, ``external.py`` (files outside the root), ``store.py`` (the facade).

What a reader sees:

* through the manifest (every reader in this package): the previous complete
  version until the manifest PUT, the new complete version after it;
* a glob over the partition's ``*.parquet`` (DuckDB, Athena): exactly the manifest's
  files whenever no publish is in progress. *During* a publish (while
  ``_publishing.json`` exists) it can see the previous version's files plus some or
  all of the new version's files, i.e. rows twice; never a truncated file (every
  object is one PUT). After any kill, the next completed publish of the partition
  removes the debris.

A partition without ``_manifest.json`` does not exist as far as readers care.
Mapped writers stage parts under ``_staging/`` (outside every partition, so globs
never see them) and publish them as one partition with :meth:`Storage.publish_staged`.
"""

from pipeline.core.storage.backend import LEASE, MANIFEST, PARTS_DIR, STAGING_DIR, Backend, check_key
from pipeline.core.storage.local import LocalBackend
from pipeline.core.storage.publish import lease_is_free
from pipeline.core.storage.s3 import S3Backend, S3Options
from pipeline.core.storage.store import Storage, check_row_count, open_storage, partition_file_checked
