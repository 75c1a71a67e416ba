"""Running a pipeline: the runner, the stage table, the run directory and its manifest,
locking, preflight checks, cost estimates, when a stage starts again, logs and shards."""
