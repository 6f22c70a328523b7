"""One raw run of a dataset-day -> its lake partition and its quarantine rows, one commit."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date

from workloads_etl.lake.bounds import Limits
from workloads_etl.lake.datasets import DATASETS
from workloads_etl.lake.normalise.metrics import DEFAULT_CHUNK_SAMPLES, MetricsChunks
from workloads_etl.lake.normalise.records import Normalised
from workloads_etl.lake.parquet import Manifest, PartitionWriter, write_partition
from workloads_etl.lake.raw import RawLanding
from workloads_etl.runai.models import RawResponse
from workloads_etl.settings import DataPaths

log = logging.getLogger(__name__)
DEFAULT_LIMITS = Limits()


@dataclass
class NormaliseResult:
    """Counts of one normalised partition; see the package docstring for the accounting.

    ``rows + rejected + duplicates_dropped + out_of_window == records`` and
    ``quarantined == rejected + field_issues``.
    """

    dataset: str
    day: date
    run_id: str
    records: int  # records received (see the package docstring for what one record is)
    rows: int  # rows written to the lake partition
    rejected: int  # records with no row (each has a quarantine row)
    quarantined: int  # rows written to the quarantine partition
    field_issues: int = 0  # rows kept with bad fields set to null (each has a quarantine row)
    duplicates_dropped: int = 0  # identical repeats of a workload: no row, not quarantined
    out_of_window: int = 0  # metric points that belong to another day
    unknown_enum_values: dict[str, int] = field(default_factory=dict)
    manifest: Manifest | None = None  # the commit: data and quarantine files


def normalise_responses(
    dataset: str,
    responses: Iterable[RawResponse],
    day: date,
    run_id: str,
    limits: Limits = DEFAULT_LIMITS,
) -> Normalised:
    """Normalise the responses of one raw run of ``dataset`` (rows, quarantine and counts)."""
    ds = DATASETS[dataset]
    if ds.normalise is None:
        raise ValueError(f"no normaliser for dataset {dataset!r}")
    return ds.normalise(dataset, responses, day, run_id, limits=limits)


def _check_accounting(r: NormaliseResult) -> None:
    """Every record is a row, rejected, a dropped identical repeat or another day's point."""
    accounted = r.rows + r.rejected + r.duplicates_dropped + r.out_of_window
    if accounted != r.records:  # a bug, never bad input
        raise AssertionError(
            f"{r.dataset} {r.day}: {accounted} records accounted for "
            f"({r.rows} rows + {r.rejected} rejected + {r.duplicates_dropped} duplicates "
            f"dropped + {r.out_of_window} outside the day), {r.records} received"
        )
    if r.quarantined != r.rejected + r.field_issues:  # a bug, never bad input
        raise AssertionError(
            f"{r.dataset} {r.day}: {r.quarantined} quarantine rows, expected "
            f"{r.rejected} rejected + {r.field_issues} field issues"
        )


def _log(result: NormaliseResult) -> None:
    log.info(
        "normalised %s %s run %s: %d records: %d rows (%d with fields set to null), "
        "%d rejected, %d identical repeats dropped, %d outside the day",
        result.dataset,
        result.day,
        result.run_id,
        result.records,
        result.rows,
        result.field_issues,
        result.rejected,
        result.duplicates_dropped,
        result.out_of_window,
    )


def committed(writer: PartitionWriter, chunks: MetricsChunks) -> NormaliseResult:
    """Commit a metrics partition written chunk by chunk, after checking its accounting."""
    result = NormaliseResult(
        dataset=writer.dataset,
        day=writer.day,
        run_id=writer.run_id,
        records=chunks.records,
        rows=chunks.rows,
        rejected=chunks.quarantined,  # every quarantined point is a rejected record
        quarantined=chunks.quarantined,
        out_of_window=chunks.out_of_window,
    )
    _check_accounting(result)
    result.manifest = writer.commit()
    _log(result)
    return result


@dataclass(frozen=True)
class RawAnswers:
    """The answers of one raw run to its dataset's operations, read from the landing anew on
    each iteration (nothing is held; a normaliser may take a second pass). Other responses of
    the run, such as the count asked for completeness, stay in raw only."""

    landing: RawLanding
    dataset: str
    day: date
    run_id: str

    def __iter__(self) -> Iterator[RawResponse]:
        wanted = DATASETS[self.dataset].operations
        for resp in self.landing.read(self.dataset, self.day, self.run_id):
            if resp.operation in wanted:
                yield resp


def by_workload(responses: Iterable[RawResponse]) -> Iterator[list[RawResponse]]:
    """Consecutive answers of one workload, together: a raw metrics run holds each workload's
    answers in one block (:func:`workloads_etl.ingest.metrics.extract_metrics`)."""
    for _, group in itertools.groupby(responses, key=lambda r: r.path_params.get("workloadId")):
        yield list(group)


def normalise_partition(
    paths: DataPaths,
    dataset: str,
    day: date,
    run_id: str | None = None,
    *,
    limits: Limits = DEFAULT_LIMITS,
    chunk_samples: int = DEFAULT_CHUNK_SAMPLES,
    cluster: str | None = None,
) -> NormaliseResult:
    """Normalise one raw run (the latest by default) into the lake partition of ``day``, or,
    with ``cluster``, into that cluster's segment of it (the run is then required: a day's
    runs are of several clusters).

    The quarantine rows (``quarantine/dataset=<dataset>/quarantine_date=<day>``) are part of
    the same commit, so a re-run replaces them with the partition. Safe to repeat: the same
    raw run gives byte-identical files. Metrics are read and written in chunks of about
    ``chunk_samples`` samples, as when they were fetched.
    """
    landing = RawLanding(paths.raw)
    if cluster is not None and run_id is None:
        raise ValueError("normalising a cluster's segment needs the run of that cluster")
    run = run_id if run_id is not None else landing.latest_run(dataset, day)
    responses = RawAnswers(landing, dataset, day, run)
    if dataset == "workload_metrics":
        writer = PartitionWriter(paths.lake, dataset, day, run, cluster)
        chunks = MetricsChunks(
            dataset, day, run, writer.write, chunk_samples=chunk_samples, limits=limits
        )
        for answers in by_workload(responses):
            chunks.add(answers)
        chunks.finish()
        return committed(writer, chunks)
    res = normalise_responses(dataset, responses, day, run, limits)
    manifest = write_partition(
        paths.lake, dataset, res.rows, day, run, quarantine=res.quarantine, cluster=cluster
    )
    result = NormaliseResult(
        dataset=dataset,
        day=day,
        run_id=run,
        records=res.records,
        rows=res.rows.num_rows,
        rejected=res.rejected,
        quarantined=res.quarantine.num_rows,
        field_issues=res.field_issues,
        duplicates_dropped=res.duplicates_dropped,
        out_of_window=res.out_of_window,
        unknown_enum_values=res.unknown_enum_values,
        manifest=manifest,
    )
    _check_accounting(result)
    _log(result)
    return result
