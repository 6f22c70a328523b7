{#- Rows whose value is below zero (beyond the float tolerance). -#}
{% test non_negative(model, column_name, tolerance=var('test_tolerance')) %}
select *
from {{ model }}
where {{ column_name }} < -{{ tolerance }}
{% endtest %}

{#- Rows whose value lies outside [min_value, max_value] (beyond the float tolerance). -#}
{% test within_range(model, column_name, min_value, max_value, tolerance=var('test_tolerance')) %}
select *
from {{ model }}
where {{ column_name }} < {{ min_value }} - {{ tolerance }}
   or {{ column_name }} > {{ max_value }} + {{ tolerance }}
{% endtest %}

{#- Rows where the column exceeds another column of the same row (beyond the tolerance). -#}
{% test not_greater_than(model, column_name, other_column, tolerance=var('test_tolerance')) %}
select *
from {{ model }}
where {{ column_name }} > {{ other_column }} + {{ tolerance }}
{% endtest %}

{#- Combinations of the given columns that occur more than once, or that have a null in one
    of the columns not listed in `nullable`. Nulls group together, so two rows equal except
    for a null in the same nullable column count as a duplicate. -#}
{% test unique_combination(model, columns, nullable=[]) %}
{%- set required = columns | reject('in', nullable) | list %}
select {{ columns | join(', ') }}, count(*) as n_rows
from {{ model }}
group by {{ columns | join(', ') }}
having count(*) > 1
{%- if required %}
union all
select {{ columns | join(', ') }}, count(*) as n_rows
from {{ model }}
where {% for c in required %}{{ c }} is null{% if not loop.last %} or {% endif %}{% endfor %}
group by {{ columns | join(', ') }}
{%- endif %}
{% endtest %}
