{#- A SQL string literal of a text value (a var set by the user), quotes escaped. -#}
{% macro sql_string(value) -%}
    '{{ value | string | replace("'", "''") }}'
{%- endmacro %}
