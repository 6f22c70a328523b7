"""workloads-etl: Run:ai workload data to a DuckDB warehouse of GPU usage, idle waste and cost."""

__version__ = "0.1.0"
