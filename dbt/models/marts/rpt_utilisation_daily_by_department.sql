{{ utilisation_rollup(['cluster_id', 'department_id'], ['department_name']) }}
