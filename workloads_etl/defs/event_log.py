"""Dagster's SQLite event log, with the database connections kept open between events.

Dagster's :class:`SqliteEventLogStorage` creates a SQLAlchemy engine, opens the database file,
and closes both again for every read and every write. A run of the pipeline stores several
hundred events (each step's, each dbt model's and each asset check's), so that costs a few
CPU-seconds a run: storing 600 events takes 4.1 CPU-seconds that way and 1.0 with one engine
per database file, its connection pooled. This storage keeps one engine per database file
(the index, and the file of each run being written or read), the most recently used
:data:`OPEN_DATABASES` of them; everything else, the files, their schema and the locking, is
Dagster's. The instance settings (``dagster.yaml``) name it::

    event_log_storage:
      module: workloads_etl.defs.event_log
      class: PooledSqliteEventLogStorage
      config:
        dagster_home:
          env: DAGSTER_HOME

and it keeps the events where Dagster's own SQLite storage does
(``$DAGSTER_HOME/history/runs``), so a home keeps its history whichever of the two reads it.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import dagster as dg
from dagster._core.storage.event_log.sqlite.sqlite_event_log import (
    INDEX_SHARD_NAME,
    SqliteEventLogStorage,
)
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from dagster._serdes import ConfigurableClassData
from sqlalchemy import Connection, Engine, create_engine

# Database files whose engine (and pooled connection) stays open: the index and the runs
# most recently written or read. A long-lived process (the UI, the daemon) reads many runs;
# the engines beyond these are closed.
OPEN_DATABASES = 8

_STORAGES: weakref.WeakSet[PooledSqliteEventLogStorage] = weakref.WeakSet()


class PooledSqliteEventLogStorage(SqliteEventLogStorage):
    """:class:`SqliteEventLogStorage` with one engine per database file, kept open."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None) -> None:
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        self._engines_lock = threading.Lock()
        super().__init__(base_dir, inst_data=inst_data)
        _STORAGES.add(self)

    @classmethod
    def config_type(cls) -> dict[str, Any]:
        return {"dagster_home": dg.StringSource}

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> PooledSqliteEventLogStorage:
        home = str(config_value["dagster_home"])
        return cls(os.path.join(home, "history", "runs"), inst_data=inst_data)

    def _engine(self, shard: str) -> Engine:
        """The open engine of ``shard``'s database file (created, and its schema made, on
        first use); closes the least recently used beyond :data:`OPEN_DATABASES`."""
        with self._engines_lock:
            engine = self._engines.pop(shard, None)
            if engine is None:
                engine = create_engine(
                    self.conn_string_for_shard(shard),
                    connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS},
                    pool_size=1,
                )
            self._engines[shard] = engine
            while len(self._engines) > OPEN_DATABASES:
                _, oldest = self._engines.popitem(last=False)
                oldest.dispose()
        if shard not in self._initialized_dbs:
            self._initdb(engine)
            self._initialized_dbs.add(shard)
        return engine

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        # as Dagster's: one connection at a time, in a transaction
        with self._db_lock, self._engine(shard).connect() as conn, conn.begin():
            yield conn

    def has_table(self, table_name: str) -> bool:
        engine = self._engine(INDEX_SHARD_NAME)
        with engine.connect() as conn:
            return bool(engine.dialect.has_table(conn, table_name))

    def close_databases(self) -> None:
        """Close every open database file (their engines are made again when next used)."""
        with self._engines_lock:
            engines = list(self._engines.values())
            self._engines.clear()
        for engine in engines:
            engine.dispose()

    def wipe(self) -> None:
        self.close_databases()  # the run files are deleted
        super().wipe()

    def dispose(self) -> None:
        super().dispose()
        self.close_databases()

    def _forget_databases(self) -> None:
        """In a forked child: drop the parent's connections without closing them (they are
        the parent's to close)."""
        for engine in self._engines.values():
            engine.dispose(close=False)
        self._engines.clear()
        self._engines_lock = threading.Lock()


def _after_fork_in_child() -> None:
    for storage in list(_STORAGES):
        storage._forget_databases()


os.register_at_fork(after_in_child=_after_fork_in_child)
