{#- The SQL that differs between the engines the project builds on: DuckDB (the warehouse of
    the pipeline) and Spark (dbt-spark, over the same lake; workloads_etl/warehouse/spark.py).
    Every macro dispatches on the adapter: default__ is DuckDB's SQL, exactly what the models
    said before they built on Spark too; spark__ says the same in Spark SQL. -#}

{#- The config of an incremental model whose rows belong to days (or months) of `column`.
    DuckDB appends the window's rows after its pre-hook deleted them (delete_usage_window);
    Spark overwrites the Parquet partitions (one per value of `column`) the run produces,
    since a Parquet table has no DELETE. -#}
{% macro incremental_by_day(column, whole_months=false, on_schema_change='append_new_columns') -%}
    {{ return(adapter.dispatch('incremental_by_day')(column, whole_months, on_schema_change)) }}
{%- endmacro %}

{% macro default__incremental_by_day(column, whole_months, on_schema_change) -%}
    {%- if whole_months -%}
        {%- set hook = "{{ delete_usage_window('" ~ column ~ "', whole_months=true) }}" -%}
    {%- else -%}
        {%- set hook = "{{ delete_usage_window('" ~ column ~ "') }}" -%}
    {%- endif -%}
    {{ return({
        'materialized': 'incremental',
        'incremental_strategy': 'append',
        'pre_hook': hook,
        'on_schema_change': on_schema_change,
    }) }}
{%- endmacro %}

{% macro spark__incremental_by_day(column, whole_months, on_schema_change) -%}
    {{ return({
        'materialized': 'incremental',
        'incremental_strategy': 'insert_overwrite',
        'file_format': 'parquet',
        'partition_by': [column],
        'on_schema_change': on_schema_change,
    }) }}
{%- endmacro %}

{#- UNION ALL matching the columns by name. -#}
{% macro union_all_by_name() -%}
    {{ return(adapter.dispatch('union_all_by_name')()) }}
{%- endmacro %}

{% macro default__union_all_by_name() -%}
    union all by name
{%- endmacro %}

{#- Spark 4 has no BY NAME for set operations: positional, so both sides must select the
    same columns in the same order (the models that use it say so). -#}
{% macro spark__union_all_by_name() -%}
    union all
{%- endmacro %}

{#- One row per distinct element of a list (none for an empty or null list). -#}
{% macro unnest_distinct(list) -%}
    {{ return(adapter.dispatch('unnest_distinct')(list)) }}
{%- endmacro %}

{% macro default__unnest_distinct(list) -%}
    unnest(list_distinct({{ list }}))
{%- endmacro %}

{% macro spark__unnest_distinct(list) -%}
    explode(array_distinct({{ list }}))
{%- endmacro %}

{#- The first element of a list, null when the list is empty or null. -#}
{% macro first_element(list) -%}
    {{ return(adapter.dispatch('first_element')(list)) }}
{%- endmacro %}

{% macro default__first_element(list) -%}
    {{ list }}[1]
{%- endmacro %}

{% macro spark__first_element(list) -%}
    try_element_at({{ list }}, 1)
{%- endmacro %}

{#- The continuous (interpolated) quantile `fraction` of an expression. -#}
{% macro quantile_cont(expression, fraction) -%}
    {{ return(adapter.dispatch('quantile_cont')(expression, fraction)) }}
{%- endmacro %}

{% macro default__quantile_cont(expression, fraction) -%}
    quantile_cont({{ expression }}, {{ fraction }})
{%- endmacro %}

{% macro spark__quantile_cont(expression, fraction) -%}
    percentile({{ expression }}, {{ fraction }})
{%- endmacro %}

{#- `value` at the row with the smallest `ordering`. -#}
{% macro arg_min(value, ordering) -%}
    {{ return(adapter.dispatch('arg_min')(value, ordering)) }}
{%- endmacro %}

{% macro default__arg_min(value, ordering) -%}
    arg_min({{ value }}, {{ ordering }})
{%- endmacro %}

{% macro spark__arg_min(value, ordering) -%}
    min_by({{ value }}, {{ ordering }})
{%- endmacro %}

{#- The md5 of the JSON of a struct of `fields`, a list of (name, expression): equal
    attributes give equal hashes (only compared within one engine). -#}
{% macro md5_of_struct(fields) -%}
    {{ return(adapter.dispatch('md5_of_struct')(fields)) }}
{%- endmacro %}

{% macro default__md5_of_struct(fields) -%}
    md5(to_json(struct_pack(
        {%- for name, expression in fields %}
            {{ name }} := {{ expression }}{{ ',' if not loop.last }}
        {%- endfor %}
    )))
{%- endmacro %}

{% macro spark__md5_of_struct(fields) -%}
    md5(to_json(named_struct(
        {%- for name, expression in fields %}
            '{{ name }}', {{ expression }}{{ ',' if not loop.last }}
        {%- endfor %}
    ), map('ignoreNullFields', 'false')))
{%- endmacro %}

{#- The rows of the hours from `first` to `last` (timestamps, both included), as one column. -#}
{% macro unnest_hours(first, last) -%}
    {{ return(adapter.dispatch('unnest_hours')(first, last)) }}
{%- endmacro %}

{% macro default__unnest_hours(first, last) -%}
    unnest(generate_series({{ first }}, {{ last }}, interval 1 hour))
{%- endmacro %}

{% macro spark__unnest_hours(first, last) -%}
    explode(sequence({{ first }}, {{ last }}, interval 1 hour))
{%- endmacro %}

{#- The text at a JSON path of a JSON text. -#}
{% macro json_extract_text(json, path) -%}
    {{ return(adapter.dispatch('json_extract_text')(json, path)) }}
{%- endmacro %}

{% macro default__json_extract_text(json, path) -%}
    json_extract_string({{ json }}, '{{ path }}')
{%- endmacro %}

{% macro spark__json_extract_text(json, path) -%}
    get_json_object({{ json }}, '{{ path }}')
{%- endmacro %}

{#- A JSON object (text) of `pairs`, a list of (key literal, value expression), in that order;
    with skip_nulls the pairs whose value is null are left out. -#}
{% macro json_object_text(pairs, skip_nulls=false) -%}
    {{ return(adapter.dispatch('json_object_text')(pairs, skip_nulls)) }}
{%- endmacro %}

{% macro default__json_object_text(pairs, skip_nulls) -%}
    {%- set entries -%}
        [{% for key, value in pairs %}({{ key }}, {{ value }}){{ ', ' if not loop.last }}{% endfor %}]
    {%- endset -%}
    {%- if skip_nulls -%}
        to_json(map_from_entries(list_filter({{ entries }}, lambda tag: tag[2] is not null)))::varchar
    {%- else -%}
        to_json(map_from_entries({{ entries }}))::varchar
    {%- endif -%}
{%- endmacro %}

{% macro spark__json_object_text(pairs, skip_nulls) -%}
    {%- set entries -%}
        map({% for key, value in pairs %}{{ key }}, {{ value }}{{ ', ' if not loop.last }}{% endfor %})
    {%- endset -%}
    {%- if skip_nulls -%}
        to_json(map_filter({{ entries }}, (k, v) -> v is not null))
    {%- else -%}
        to_json({{ entries }})
    {%- endif -%}
{%- endmacro %}

{#- A date (or timestamp) as 'YYYY-MM-DD' text. -#}
{% macro iso_date_text(expression) -%}
    {{ return(adapter.dispatch('iso_date_text')(expression)) }}
{%- endmacro %}

{% macro default__iso_date_text(expression) -%}
    strftime({{ expression }}, '%Y-%m-%d')
{%- endmacro %}

{% macro spark__iso_date_text(expression) -%}
    date_format({{ expression }}, 'yyyy-MM-dd')
{%- endmacro %}

{#- Every match of a regular expression replaced. -#}
{% macro regexp_replace_all(text, pattern, replacement) -%}
    {{ return(adapter.dispatch('regexp_replace_all')(text, pattern, replacement)) }}
{%- endmacro %}

{% macro default__regexp_replace_all(text, pattern, replacement) -%}
    regexp_replace({{ text }}, {{ pattern }}, {{ replacement }}, 'g')
{%- endmacro %}

{% macro spark__regexp_replace_all(text, pattern, replacement) -%}
    regexp_replace({{ text }}, {{ pattern }}, {{ replacement }})
{%- endmacro %}

{#- The type of text values. -#}
{% macro text_type() -%}
    {{ return(adapter.dispatch('text_type')()) }}
{%- endmacro %}

{% macro default__text_type() -%}
    varchar
{%- endmacro %}

{% macro spark__text_type() -%}
    string
{%- endmacro %}

{#- The type of instants (shown in the session's time zone, UTC). -#}
{% macro timestamptz_type() -%}
    {{ return(adapter.dispatch('timestamptz_type')()) }}
{%- endmacro %}

{% macro default__timestamptz_type() -%}
    timestamptz
{%- endmacro %}

{% macro spark__timestamptz_type() -%}
    timestamp
{%- endmacro %}

{#- The contracts of the marts declare DuckDB's type names (varchar, timestamptz, integer);
    dbt checks a contract by casting null to each declared type. On Spark the names are
    translated to Spark's (string, timestamp, int) first, so the same contract is enforced. -#}
{% macro spark__cast(field, type) -%}
    {%- set names = {'varchar': 'string', 'timestamptz': 'timestamp', 'integer': 'int'} -%}
    cast({{ field }} as {{ names.get(type | trim | lower, type) }})
{%- endmacro %}

{#- The DECIMAL type the hours are quantised to before they are multiplied by the seeds'
    prices (DECIMAL(12, 4) and (12, 6)). DuckDB keeps the product exact (the scales add up).
    Spark caps a product at 38 digits by cutting its scale down to 6 when the digits of the
    operands add up to more: 25 digits of hours (up to 10^16 hours, to the billionth) leave
    room for the prices' digits, so the product keeps every decimal there too. -#}
{% macro hours_decimal_type() -%}
    {{ return(adapter.dispatch('hours_decimal_type')()) }}
{%- endmacro %}

{% macro default__hours_decimal_type() -%}
    decimal(38, 9)
{%- endmacro %}

{% macro spark__hours_decimal_type() -%}
    decimal(25, 9)
{%- endmacro %}

{#- The config of an incremental model with one row per `key` that folds the states of the
    run's window (of the models named in `states`) into the rows it holds (see
    macros/fold.sql; folded_date and folded_at: its columns of the last day and fetch folded).
    DuckDB replaces the rows of the keys the run produces (delete+insert), after a pre-hook
    that empties the table when the run rebuilds from every state instead; Spark rebuilds
    the table. -#}
{% macro incremental_by_key(key, states=['int_workload_states'],
        folded_date='last_snapshot_date', folded_at='last_seen_at') -%}
    {{ return(adapter.dispatch('incremental_by_key')(key, states, folded_date, folded_at)) }}
{%- endmacro %}

{% macro default__incremental_by_key(key, states, folded_date, folded_at) -%}
    {%- set hook = "{{ delete_unless_folding(" ~ states ~ ", '" ~ folded_date ~ "', '"
        ~ folded_at ~ "') }}" -%}
    {{ return({
        'materialized': 'incremental',
        'incremental_strategy': 'delete+insert',
        'unique_key': key,
        'pre_hook': hook,
        'on_schema_change': 'sync_all_columns',
    }) }}
{%- endmacro %}

{% macro spark__incremental_by_key(key, states, folded_date, folded_at) -%}
    {{ return({'materialized': 'table'}) }}
{%- endmacro %}

{#- The columns a mart's contract declares never null are not_null constraints, checked after
    every build of the mart by its post-hook (dbt_project.yml). DuckDB enforces them itself:
    dbt creates the table with NOT NULL columns and DuckDB checks every row inserted, the
    incremental runs' too; the hook only adds the constraint to a table built before its
    contract declared it (an older warehouse), which fails when the column holds nulls. A
    Parquet table on Spark takes no constraint (dbt-spark would ALTER it as a Delta table), so
    there the hook counts the nulls of those columns and fails the node naming them. -#}
{% macro spark__persist_constraints(relation, model) %}{% endmacro %}

{% macro check_not_null_constraints() -%}
    {%- set columns = [] -%}
    {%- for name, column in model.columns.items() -%}
        {%- for constraint in column.constraints -%}
            {%- if constraint.type == 'not_null' -%}{%- do columns.append(name) -%}{%- endif -%}
        {%- endfor -%}
    {%- endfor -%}
    {%- if execute and columns -%}
        {%- do adapter.dispatch('check_not_null_constraints')(columns) -%}
    {%- endif -%}
{%- endmacro %}

{% macro default__check_not_null_constraints(columns) -%}
    {%- set nullable -%}
        select column_name from information_schema.columns
        where table_catalog = '{{ this.database }}' and table_schema = '{{ this.schema }}'
          and table_name = '{{ this.identifier }}' and is_nullable = 'YES'
          and column_name in ({% for name in columns %}'{{ name }}'{{ ',' if not loop.last }}{% endfor %})
        order by column_name
    {%- endset -%}
    {%- for row in run_query(nullable).rows -%}
        {%- do run_query('alter table ' ~ this ~ ' alter column ' ~ adapter.quote(row[0]) ~ ' set not null') -%}
    {%- endfor -%}
{%- endmacro %}

{% macro spark__check_not_null_constraints(columns) -%}
    {%- set counts -%}
        select
        {%- for name in columns %} count_if({{ adapter.quote(name) }} is null){{ ',' if not loop.last }}{% endfor %}
        from {{ this }}
    {%- endset -%}
    {%- set row = run_query(counts).rows[0] -%}
    {%- set failed = [] -%}
    {%- for name in columns -%}
        {%- if row[loop.index0] > 0 -%}
            {%- do failed.append(name ~ ' (' ~ row[loop.index0] ~ ' rows)') -%}
        {%- endif -%}
    {%- endfor -%}
    {%- if failed -%}
        {{ exceptions.raise_compiler_error('NOT NULL constraint failed: ' ~ this ~ ': null ' ~ failed | join(', ')) }}
    {%- endif -%}
{%- endmacro %}
