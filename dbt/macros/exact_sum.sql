{#- The sum of a DOUBLE expression, independent of the order the rows are added in.

    A float sum depends on the order DuckDB's threads combine their partial sums, so the same
    input could give marts differing in the last bits from one run to the next. Here every
    value is quantised to DECIMAL(38, 9) (a billionth of its unit, the rounding of a single
    value, which does not depend on any other row), the decimals are added exactly (128-bit
    integers) and the total is converted to DOUBLE once: the same rows always give the same
    bits. Null values are skipped like in sum(); no rows give null. -#}
{% macro exact_sum(expression) -%}
    cast(sum(cast({{ expression }} as decimal(38, 9))) as double)
{%- endmacro %}

{#- The mean of a DOUBLE expression over its non-null values, order-independent like
    exact_sum. -#}
{% macro exact_avg(expression) -%}
    ({{ exact_sum(expression) }} / nullif(count({{ expression }}), 0))
{%- endmacro %}
