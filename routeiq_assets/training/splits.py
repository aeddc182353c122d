"""Deterministic train/validation/test splits by query hash.

The hash is of the normalised text (lower case, whitespace collapsed), so near-duplicate
queries always land on the same side and the test set never leaks into training.
"""

from __future__ import annotations

import hashlib
import re

_SPACE = re.compile(r"\s+")
SPLITS = ("train", "validation", "test")


def normalise_query(text: str) -> str:
    return _SPACE.sub(" ", text.strip().lower())


def split_for(text: str, validation: float = 0.1, test: float = 0.1) -> str:
    """The split a query belongs to; stable across runs and machines."""
    if not (0 <= validation < 1 and 0 <= test < 1 and validation + test < 1):
        raise ValueError(f"bad split fractions validation={validation} test={test}")
    digest = hashlib.sha256(normalise_query(text).encode("utf-8")).digest()
    position = int.from_bytes(digest[:8], "big") / 2**64
    if position < test:
        return "test"
    if position < test + validation:
        return "validation"
    return "train"
