{#- The days an incremental run reprocesses, from the vars start_date / end_date
    (inclusive, 'YYYY-MM-DD'). Either may be omitted; a malformed value fails compilation. -#}
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

{#- A SQL predicate restricting `column` to the days of the vars start_date / end_date,
    whatever the kind of run (`true` when no window is given). Tests use it to check only
    the days a run rebuilt. -#}
{% macro usage_window_filter(column) -%}
    {%- set start = _usage_window_bound('start_date') -%}
    {%- set end = _usage_window_bound('end_date') -%}
    {%- if start is not none and end is not none and start > end -%}
        {{ exceptions.raise_compiler_error("var start_date (" ~ start ~ ") is after end_date (" ~ end ~ ")") }}
    {%- endif -%}
    {%- if start is not none or end is not none -%}
        ({%- if start is not none %}{{ column }} >= date '{{ start }}'{% endif -%}
        {%- if start is not none and end is not none %} and {% endif -%}
        {%- if end is not none %}{{ column }} <= date '{{ end }}'{% endif -%})
    {%- else -%}
        true
    {%- endif -%}
{%- endmacro %}

{#- A SQL predicate restricting `column` to the run's days on incremental runs; `true` on
    full builds (first run, --full-refresh) and when no window is given. -#}
{% macro usage_window_predicate(column) -%}
    {%- set window = usage_window_filter(column) -%}
    {%- if is_incremental() -%}
        {{ window }}
    {%- else -%}
        true
    {%- endif -%}
{%- endmacro %}

{#- The pre-hook of the daily incremental models: on an incremental run, delete every row of
    the run's window before the new rows are appended, so a reprocessed day that now has no
    rows (its raw data was removed or re-loaded empty) is emptied too. Without a window an
    incremental run reprocesses every day and so replaces the whole table. Nothing on full
    builds. Runs in the model's transaction. -#}
{% macro delete_usage_window(column='usage_date') -%}
    {%- if is_incremental() -%}
        delete from {{ this }} where {{ usage_window_predicate(column) }}
    {%- endif -%}
{%- endmacro %}

{#- Like usage_window_predicate, with the window's start moved `days` earlier: models whose
    daily values need the samples just before the day (counter increments) read them. -#}
{% macro usage_window_predicate_with_lookback(column, days=1) -%}
    {%- set start = _usage_window_bound('start_date') -%}
    {%- set end = _usage_window_bound('end_date') -%}
    {%- if is_incremental() and (start is not none or end is not none) -%}
        ({%- if start is not none %}{{ column }} >= date '{{ start }}' - interval {{ days }} day{% endif -%}
        {%- if start is not none and end is not none %} and {% endif -%}
        {%- if end is not none %}{{ column }} <= date '{{ end }}'{% endif -%})
    {%- else -%}
        true
    {%- endif -%}
{%- endmacro %}
