"""The DuckDB warehouse: loading lake partitions into the ``raw`` schema."""
