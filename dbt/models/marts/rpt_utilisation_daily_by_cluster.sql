{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        pre_hook="{{ delete_usage_window('usage_date') }}",
        on_schema_change='append_new_columns',
    )
}}

{{ utilisation_rollup(['cluster_id']) }}
