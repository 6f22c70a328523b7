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

{#- A SQL predicate restricting `column` to the run's days on incremental runs; `true` on
    full builds (first run, --full-refresh) and when no window is given. -#}
{% macro usage_window_predicate(column) -%}
    {%- set start = _usage_window_bound('start_date') -%}
    {%- set end = _usage_window_bound('end_date') -%}
    {%- if start is not none and end is not none and start > end -%}
        {{ exceptions.raise_compiler_error("var start_date (" ~ start ~ ") is after end_date (" ~ end ~ ")") }}
    {%- endif -%}
    {%- if is_incremental() and (start is not none or end is not none) -%}
        ({%- if start is not none %}{{ column }} >= date '{{ start }}'{% endif -%}
        {%- if start is not none and end is not none %} and {% endif -%}
        {%- if end is not none %}{{ column }} <= date '{{ end }}'{% endif -%})
    {%- else -%}
        true
    {%- endif -%}
{%- endmacro %}
