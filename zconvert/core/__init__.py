"""Core: what every stage shares: errors, the records that cross stages (Task, Result), dtypes,
where bytes live (local paths and URLs), positional reads. Imports nothing else of zconvert."""
