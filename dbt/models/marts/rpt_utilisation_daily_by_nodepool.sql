{{ config(**incremental_by_day('usage_date')) }}

{{ utilisation_rollup(['cluster_id', 'nodepool']) }}
