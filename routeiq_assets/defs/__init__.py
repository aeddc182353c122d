"""The Dagster shell: assets, checks, sensors and resources over the core."""
