"""Artifact stores, manifests and the MLflow registry."""
