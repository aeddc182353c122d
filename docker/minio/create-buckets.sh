#!/bin/sh
# One-shot (minio-init): the MLflow artifact bucket and the bucket deployed routers go to.
# Idempotent: existing buckets are kept.
set -eu
mc alias set routeiq http://minio:9000 "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD"
for bucket in "$MLFLOW_BUCKET" "$MODELS_BUCKET"; do
  mc mb --ignore-existing "routeiq/$bucket"
done
mc ls routeiq
