"""Raw landing, normalisation and the Parquet lake."""
