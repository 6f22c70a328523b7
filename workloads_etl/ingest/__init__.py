"""Ingestion: from the Run:ai API into the raw landing zone, then into the lake, one dataset
and UTC day at a time.

:mod:`.lists`, :mod:`.metrics` and :mod:`.telemetry` extract one dataset-day each: every
answer the client receives is recorded, as received, into that partition's raw run file
(through a recording view of the client). :mod:`.day` runs one dataset-day end to end:
extract, then normalise the raw run into the lake partition, and reports the counts. A
partition can always be rebuilt from raw without calling the API again.
"""
