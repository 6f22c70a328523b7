"""Normalise raw API responses into the Arrow schemas of :mod:`workloads_etl.lake.schemas`.

One module per kind of answer (:mod:`.workloads`, :mod:`.metrics`, :mod:`.telemetry`), the
shared pieces in :mod:`.records`, and :mod:`.partition`, which turns one raw run into one lake
partition and checks the accounting below.

Every record received ends up as a row, as a quarantine row with a reason, or (only an
identical repeat of a workload already made a row) dropped and counted; a bad record never
stops a partition. Counts per partition (:class:`~.partition.NormaliseResult`):

- ``records``: for workloads (snapshots and deleted) one item of ``workloads`` (an unparsable
  page counts as one record); for metrics one point of ``values`` (an unparsable response or
  measurement counts as one); for telemetry one item of ``values`` (an unparsable response
  counts as one).
- ``rows``: rows written. ``rejected``: records with no row, each with a quarantine row.
  ``duplicates_dropped``: identical repeats of a workload (workloads only). ``out_of_window``:
  metric points of another day's partition (metrics only).
- ``field_issues``: rows kept with one or more fields set to null (workloads only), each with
  one quarantine row. ``quarantined``: rows of the quarantine partition.

Always ``rows + rejected + duplicates_dropped + out_of_window == records`` and
``quarantined == rejected + field_issues``. A quarantine row of a field issue has a reason
ending in ``(row kept, field set to null)`` or ``(row kept, fields set to null)``
(:data:`~.records.FIELD_ISSUE_MARK` finds both); any other quarantine row is a rejected record.

Workload records: rejected whole or row kept. A workload record is rejected (no row) only when
it cannot be a row: it is not a JSON object, its ``id`` is missing, null or not a uuid (the
page holding it is unparsable, or it is an older copy of a workload id, see below). Every other
problem is a field issue: the row is kept, the offending column(s) are null, and one quarantine
row per record lists every problem, e.g. ``allocated_gpu_memory_bytes: unparsable quantity
'12 gigs' (row kept, field set to null)``. Field issues are:

- an unparsable Kubernetes quantity (``*_bytes`` columns);
- an unparsable timestamp in any timestamp field, ``createdAt`` and ``updatedAt`` included;
- a value of the wrong JSON type for a scalar (string, integer, number, boolean), an integer
  outside int64, a non-finite number, or a string list that is not an array of strings;
- a nested object (``requestedPods``, ``workloadRequestedResources``, ``allocatedResources``,
  their ``gpu``/``cpu``/... parts) that is not an object: all its columns are null.

So a workload with one bad field is still listed, its metrics fetched and charged; the
quarantine row (with the whole record as received) says what was lost.

Decisions on the contract:

- Required fields other than ``id`` that are absent become nulls (older control planes omit
  some).
- Offset paging over a changing list repeats workloads, and both passes of a listing are
  recorded. Within one run an identical repeat of a workload (same JSON content, keys in any
  order) is dropped and counted in ``duplicates_dropped``: it is neither a row nor quarantined.
  Copies of one workload id with different content: the copy with the latest ``updatedAt``
  (then the latest received) is the row; every other copy is rejected and quarantined with a
  reason saying so. Rejected records (no usable ``id``) are never treated as repeats: each is
  quarantined. Repeats of a metric point (same primary key) are quarantined as rejected
  (identical or not); the first received is the row.
- Unknown enum values (``phase``, ``source``, ``sourceApi``, ``phaseReason``,
  ``gpuRequestType``) keep the row with the value as sent (newer control planes add values)
  and are counted in ``unknown_enum_values`` (also in the logs); they are not quarantined.
- Metric values must be finite numbers (``NaN``/``Inf`` are quarantined); a missing value
  or timestamp quarantines the point; an empty/absent ``labels`` map gives ``labels_json``
  null.
- Unknown top-level workload fields are kept in ``extra_fields_json``; unknown keys inside
  the flattened objects (resources, requestedPods) are kept there too, as ``parent.key``.
- ``quarantined_at`` is the time the offending response was received, so re-normalising the
  same raw run gives byte-identical files.
"""
