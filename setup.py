"""Builds the optional compiled OTLP normaliser; all other metadata is in pyproject.toml.

``optional=True``: where no C compiler or Python headers are found, the install still succeeds
and ingestion takes the pure-Python path (same results, slower; see
routeiq_assets/warehouse/otlp_native.py).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "routeiq_assets.warehouse._otlp_native",
            sources=["routeiq_assets/warehouse/_otlp_native.c"],
            extra_compile_args=["-O3"],
            optional=True,
        )
    ]
)
