{#- A SQL string literal of a text value (a var set by the user), quotes escaped. -#}
{% macro sql_string(value) -%}
    {{ return(adapter.dispatch('sql_string')(value)) }}
{%- endmacro %}

{% macro default__sql_string(value) -%}
    '{{ value | string | replace("'", "''") }}'
{%- endmacro %}

{#- Spark escapes with backslashes inside string literals. -#}
{% macro spark__sql_string(value) -%}
    '{{ value | string | replace("\\", "\\\\") | replace("'", "\\'") }}'
{%- endmacro %}
