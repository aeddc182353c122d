"""Metrics, off-policy estimators and report rendering."""
