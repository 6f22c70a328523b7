"""Write every table of the Spark warehouse's ``marts`` schema to ``<out>/<table>.parquet``,
read through Spark (its catalog and its session), for the tests to compare with DuckDB's.

Run as ``python tests/spark/dump_marts.py DATA_DIR OUT_DIR``: a process of its own, since
the embedded metastore admits one Spark process at a time.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pyarrow.parquet as pq

from workloads_etl.settings import DataPaths
from workloads_etl.warehouse.spark import spark_session


def main(data_dir: str, out_dir: str) -> None:
    spark = spark_session(DataPaths(Path(data_dir)))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for row in spark.sql("show tables in marts").collect():
        if row.isTemporary:
            continue
        table = spark.table(f"marts.{row.tableName}").toArrow()
        pq.write_table(table, out / f"{row.tableName}.parquet")
    spark.stop()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
