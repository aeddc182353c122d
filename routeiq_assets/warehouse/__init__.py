"""The DuckDB warehouse: schema, normalisation and idempotent batch writes."""
