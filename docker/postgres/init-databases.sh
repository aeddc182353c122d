#!/bin/sh
# Runs once, on the first start of an empty data volume: Dagster's database is POSTGRES_DB;
# MLflow gets its own database on the same server.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<SQL
CREATE DATABASE "${MLFLOW_POSTGRES_DB:-mlflow}";
SQL
