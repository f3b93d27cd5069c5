"""What every stage stands on: settings, storage, errors, the storage layout, lineage and keys.

Nothing here imports a stage package (data, model, monitoring, ops)."""
