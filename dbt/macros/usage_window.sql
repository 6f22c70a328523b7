{#- The window of a run: the days (inclusive) an incremental run reprocesses and its tests check.

    Where it comes from
    - The pipeline writes it as data, one row of the table raw._dbt_window (start_date date,
      end_date date), right before it starts dbt, and empties the table when dbt has ended.
      No row or a null bound: every day (no bound on that side).
    - The vars start_date / end_date ('YYYY-MM-DD', either may be omitted) override the table:
      for dbt run by hand, e.g. `dbt build --vars '{"start_date": "2026-11-01", "end_date":
      "2026-11-03", ...}'`. The pipeline never passes them.

    Why data and not vars: dbt keeps its partial parse only while the --vars, the profile and
    the target stay the same. A window passed as vars changed them on every nightly run and
    made dbt parse the whole project again (about half of the dbt step). The pipeline now
    passes the same vars every time and dbt re-parses only the files that changed.

    Why the bounds are read when a node runs (run_query, behind the `execute` flag) and
    inlined as date literals, instead of SQL reading the table (`usage_date between (select
    start_date from raw._dbt_window) and ...`): the compiled SQL is what it was with vars, so
    every plan is the one it was (DuckDB prunes row groups by the date column with constants;
    with a subquery it depends on dynamic filter pushdown through the joins, window functions
    and deletes of each model), and target/compiled/ shows the days a run processed. At parse
    time (`execute` false) nothing is read and the macros render their unbounded form:
    parsing never depends on the window. The cost: a one-row query per macro call while a
    node runs (a millisecond or two). The on-run-start hook creates the table, empty, where
    it is missing (dbt by hand on a fresh warehouse: every day). -#}

{#- The on-run-start hook: the window table, created empty (every day) where it is missing,
    with the columns the pipeline writes (workloads_etl.warehouse.dbt.WINDOW_COLUMNS).
    full_build_through: see usage_window_predicate. -#}
{% macro create_usage_window_table() -%}
    create table if not exists raw._dbt_window
        (start_date date, end_date date, full_build_through date)
{%- endmacro %}

{#- One var bound, validated ('YYYY-MM-DD'); none when unset. A malformed value fails. -#}
{% macro _usage_window_bound(name) -%}
    {%- set value = var(name, none) -%}
    {%- if value is none or value == '' -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set text = value | string -%}
    {%- if not modules.re.match('^[0-9]{4}-[0-9]{2}-[0-9]{2}$', text) -%}
        {{ exceptions.raise_compiler_error("var " ~ name ~ " must be a date 'YYYY-MM-DD', got '" ~ text ~ "'") }}
    {%- endif -%}
    {%- do modules.datetime.date.fromisoformat(text) -%}
    {{ return(text) }}
{%- endmacro %}

{#- [start, end] of the window ('YYYY-MM-DD' strings, none where unbounded): the vars when
    either is set, else the row of raw._dbt_window when a node runs; [none, none] at parse
    time. -#}
{% macro usage_window_bounds() -%}
    {%- set start = _usage_window_bound('start_date') -%}
    {%- set end = _usage_window_bound('end_date') -%}
    {%- if start is none and end is none and execute -%}
        {%- set row = run_query(
            "select " ~ iso_date_text('min(start_date)') ~ ", " ~ iso_date_text('max(end_date)')
            ~ " from raw._dbt_window"
        ).rows[0] -%}
        {%- set start = row[0] -%}
        {%- set end = row[1] -%}
    {%- endif -%}
    {%- if start is not none and end is not none and start > end -%}
        {{ exceptions.raise_compiler_error("the window's start_date (" ~ start ~ ") is after its end_date (" ~ end ~ ")") }}
    {%- endif -%}
    {{ return([start, end]) }}
{%- endmacro %}

{#- A SQL predicate restricting `column` to the days of the window, whatever the kind of run
    (`true` when there is no window). Tests use it to check only the days a run rebuilt.
    With whole_months, the window grows to the whole months it touches (monthly reports:
    `column` a day or the first day of a month). lookback_days moves its start earlier. -#}
{% macro usage_window_filter(column, whole_months=false, lookback_days=0) -%}
    {%- set bounds = usage_window_bounds() -%}
    {%- set start = bounds[0] -%}
    {%- set end = bounds[1] -%}
    {%- if start is not none or end is not none -%}
        {%- if whole_months and start is not none -%}
            {%- set start = start[:8] ~ '01' -%}
        {%- endif -%}
        {%- if whole_months and end is not none -%}
            {%- set day = modules.datetime.date.fromisoformat(end).replace(day=28) + modules.datetime.timedelta(days=4) -%}
            {%- set end = (day - modules.datetime.timedelta(days=day.day)).isoformat() -%}
        {%- endif -%}
        {%- set low = "date '" ~ start ~ "'" if start is not none else none -%}
        {%- set high = "date '" ~ end ~ "'" if end is not none else none -%}
        {%- if lookback_days and low is not none -%}
            {%- set low = low ~ " - interval " ~ lookback_days ~ " day" -%}
        {%- endif -%}
        ({%- if low is not none %}{{ column }} >= {{ low }}{% endif -%}
        {%- if low is not none and high is not none %} and {% endif -%}
        {%- if high is not none %}{{ column }} <= {{ high }}{% endif -%})
    {%- else -%}
        true
    {%- endif -%}
{%- endmacro %}

{#- The full_build_through of the window table when a node runs (none at parse time, in a
    unit test, which reads its own fixtures, when the vars set the window, or when it is
    unset). -#}
{% macro _usage_window_full_build_through() -%}
    {%- if not execute or model.resource_type == 'unit_test'
            or _usage_window_bound('start_date') is not none
            or _usage_window_bound('end_date') is not none -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set row = run_query(
        "select " ~ iso_date_text('max(full_build_through)') ~ " from raw._dbt_window"
    ).rows[0] -%}
    {{ return(row[0]) }}
{%- endmacro %}

{#- What a full build (a model's first build, --full-refresh) reads of `column`: every day,
    or the days up to full_build_through when the runner set it. It does on every build but
    the last of a window it cuts in several (a long backfill of a large cluster): on a fresh
    warehouse the first build then creates each model from its own days only, not from every
    day the run loaded, and the later builds add the rest incrementally. -#}
{% macro _usage_window_full_build(column) -%}
    {%- set through = _usage_window_full_build_through() -%}
    {%- if through is not none -%}
        ({{ column }} <= date '{{ through }}')
    {%- else -%}
        true
    {%- endif -%}
{%- endmacro %}

{#- A SQL predicate restricting `column` to the window on incremental runs; on full builds
    (first run, --full-refresh) every day, or the days up to full_build_through (above); `true`
    when there is no window. -#}
{% macro usage_window_predicate(column, whole_months=false) -%}
    {%- if is_incremental() -%}
        {{ usage_window_filter(column, whole_months=whole_months) }}
    {%- else -%}
        {{ _usage_window_full_build(column) }}
    {%- endif -%}
{%- endmacro %}

{#- The pre-hook of the daily incremental models: on an incremental run, delete every row of
    the window before the new rows are appended, so a reprocessed day that now has no rows
    (its raw data was removed or re-loaded empty) is emptied too. Without a window an
    incremental run reprocesses every day and so replaces the whole table. Nothing on full
    builds. Runs in the model's transaction. whole_months: the monthly models replace the
    whole months the window touches. -#}
{% macro delete_usage_window(column='usage_date', whole_months=false) -%}
    {%- if is_incremental() -%}
        delete from {{ this }} where {{ usage_window_predicate(column, whole_months=whole_months) }}
    {%- endif -%}
{%- endmacro %}

{#- Like usage_window_predicate, with the window's start moved `days` earlier: models whose
    daily values need the samples just before the day (counter increments) read them. -#}
{% macro usage_window_predicate_with_lookback(column, days=1) -%}
    {%- if is_incremental() -%}
        {{ usage_window_filter(column, lookback_days=days) }}
    {%- else -%}
        {{ _usage_window_full_build(column) }}
    {%- endif -%}
{%- endmacro %}

{#- The tests of a large table check only the window: the generic tests (not_null, unique,
    unique_combination, the range tests...) of a model or source whose meta names a
    `window_column` select from the table restricted to the window (and the test's own
    `where`, if any). Tests of small tables (dimensions, reports) check every row. This is
    dbt's get_where_subquery, which wraps the tested relation of every generic test; it runs
    when the test runs, so the window is read then (see usage_window_bounds). -#}
{% macro get_where_subquery(relation) -%}
    {%- set where = config.get('where') -%}
    {%- set column = _window_column_of(relation) if execute else none -%}
    {%- set filters = [] -%}
    {%- if where -%}
        {%- do filters.append('(' ~ where ~ ')') -%}
    {%- endif -%}
    {%- if column -%}
        {%- set window = usage_window_filter(adapter.quote(column)) -%}
        {%- if window != 'true' -%}
            {%- do filters.append(window) -%}
        {%- endif -%}
    {%- endif -%}
    {%- if filters -%}
        {%- set filtered -%}
            (select * from {{ relation }} where {{ filters | join(' and ') }}) dbt_subquery
        {%- endset -%}
        {{ return(filtered) }}
    {%- else -%}
        {{ return(relation) }}
    {%- endif -%}
{%- endmacro %}

{#- meta.window_column of the model or source a test reads as `relation` (none if unset). -#}
{% macro _window_column_of(relation) -%}
    {%- for unique_id in model.depends_on.nodes -%}
        {%- set node = graph.nodes.get(unique_id) or graph.sources.get(unique_id) -%}
        {%- if node and (node.alias or node.identifier or node.name) | lower == relation.identifier | lower
                and node.schema | lower == relation.schema | lower -%}
            {%- set meta = (node.config or {}).get('meta') or node.meta or {} -%}
            {{ return(meta.get('window_column')) }}
        {%- endif -%}
    {%- endfor -%}
    {{ return(none) }}
{%- endmacro %}
