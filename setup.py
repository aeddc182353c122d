"""Builds the optional compiled OTLP normaliser; all other metadata is in pyproject.toml.

``optional=True``: where no C compiler or Python headers are found, the install still succeeds
and ingestion takes the pure-Python path (same results, slower; see
routeiq_assets/warehouse/otlp_native.py).
"""

import hashlib
from pathlib import Path

from setuptools import Extension, setup

SOURCE = "routeiq_assets/warehouse/_otlp_native.c"
# the module carries the hash of the source it was built from: in a source tree, an edited C
# file whose build failed (optional=True only warns) is noticed instead of its stale module used
DIGEST = hashlib.sha256((Path(__file__).parent / SOURCE).read_bytes()).hexdigest()

setup(
    ext_modules=[
        Extension(
            "routeiq_assets.warehouse._otlp_native",
            sources=[SOURCE],
            define_macros=[("SOURCE_SHA256", f'"{DIGEST}"')],
            extra_compile_args=["-O3"],
            optional=True,
        )
    ]
)
