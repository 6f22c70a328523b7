{#- Models that fold every state of a workload into rows per workload (int_workloads_latest,
    dim_workloads_history) would read every state ever fetched on every run: each day's lists
    hold every workload the control plane still knows, so the states grow with the days of
    history times the workloads, and so would the nightly run. They are incremental instead:
    a run folds the states of its window into the rows it already holds (the `previous`
    rows of the window's workloads), and only when the window comes after everything folded:

    - every day of the window is later than the last day folded (no day is folded twice: a
      day run again has had its states replaced, and its old states are in the rows);
    - every fetch of the window is later than the last fetch folded (the window's states
      come last in the order the folds use, snapshot_at).

    Otherwise (a backfill of past days, a day run again, a first build, no window, a unit
    test) the run rebuilds the model from every state, after the pre-hook emptied the table:
    the result is the same either way. -#}

{#- Whether this run folds its window into the rows held (true) or rebuilds from every state
    (false); read when the node runs, like the window. `states` are the relations of the
    states the model folds (columns snapshot_date, snapshot_at); `folded_date` and
    `folded_at` are the columns of this model holding the last day and the last fetch folded
    into each row. -#}
{% macro folds_window(states, folded_date='last_snapshot_date', folded_at='last_seen_at') -%}
    {%- if not execute or model.resource_type == 'unit_test' or not is_incremental() -%}
        {{ return(false) }}
    {%- endif -%}
    {%- set bounds = usage_window_bounds() -%}
    {%- if bounds[0] is none -%}
        {{ return(false) }}
    {%- endif -%}
    {%- set query -%}
        with held as (
            select max({{ folded_date }}) as last_day, max({{ folded_at }}) as last_at
            from {{ this }}
        ),
        window_states as (
            select min(snapshot_at) as first_at
            from (
                {%- for relation in states %}
                select snapshot_at from {{ relation }}
                where {{ usage_window_filter('snapshot_date') }}
                {{- ' union all' if not loop.last }}
                {%- endfor %}
            ) as fetched
        )
        select coalesce(
            held.last_day < date '{{ bounds[0] }}'
                and (window_states.first_at is null or window_states.first_at > held.last_at),
            false
        )
        from held, window_states
    {%- endset -%}
    {{ return(run_query(query).rows[0][0]) }}
{%- endmacro %}

{#- The pre-hook of the folding models: empty the table when the run rebuilds it from every
    state (so a workload whose states are all gone goes too). `states` are the names of the
    models it folds. -#}
{% macro delete_unless_folding(states, folded_date, folded_at) -%}
    {%- set relations = [] -%}
    {%- for name in states -%}
        {%- do relations.append(ref(name)) -%}
    {%- endfor -%}
    {%- if is_incremental() and not folds_window(relations, folded_date, folded_at) -%}
        delete from {{ this }}
    {%- endif -%}
{%- endmacro %}

{#- The states a folding model reads: the window's when it folds, else every state (on a
    first build cut in windows, the days up to full_build_through; see usage_window.sql). -#}
{% macro states_to_fold(folding) -%}
    {%- if folding -%}
        {{ usage_window_filter('snapshot_date') }}
    {%- elif is_incremental() -%}
        true
    {%- else -%}
        {{ _usage_window_full_build('snapshot_date') }}
    {%- endif -%}
{%- endmacro %}
