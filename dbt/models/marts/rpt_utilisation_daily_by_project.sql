{{ utilisation_rollup(['cluster_id', 'department_id', 'project_id'], ['department_name', 'project_name']) }}
