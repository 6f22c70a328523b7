{{ utilisation_rollup(['cluster_id', 'nodepool']) }}
