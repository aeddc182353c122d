"""json_text: json.dumps's text, from one reused C encoder."""

import json
import math
import random

import pytest

from routeiq_assets.warehouse import normalize
from routeiq_assets.warehouse.normalize import json_text

VALUES = [
    {},
    [],
    {"a": 1, "b": [1, 2.5, None, True, False], "c": {"d": "e"}},
    {'quote"back\\slash': "tab\tnew\nline\u0001 é 漢 \ud83d\ude00"},  # escapes, non-ASCII, astral
    {"lone": "\ud800"},  # an unpaired surrogate, as json.loads gives one
    {"nan": math.nan, "inf": math.inf, "-inf": -math.inf},
    {"float": 0.1 + 0.2, "tiny": 5e-324, "big": 1e308, "neg0": -0.0, "int": 10**40},
    {1: "int key", 2.5: "float key", False: "bool key", None: "null key"},
    "a bare string \u2028",
    3.14,
    None,
]


@pytest.mark.parametrize("value", VALUES, ids=range(len(VALUES)))
def test_the_text_is_json_dumps_text(value):
    assert normalize._ENCODER is not None  # CPython: the C encoder is there
    assert json_text(value) == json.dumps(value)


def test_random_documents_and_what_json_dumps_refuses():
    rng = random.Random(3)
    pieces = ["a", "é", "\n", '"', "\\", "\ud83d\ude00", "\x7f", "</"]

    def value(depth):
        kind = rng.randrange(7 if depth < 4 else 4)
        if kind == 0:
            return "".join(rng.choices(pieces, k=rng.randrange(6)))
        if kind == 1:
            return (
                rng.uniform(-1e6, 1e6) if rng.random() < 0.5 else rng.randrange(-(10**20), 10**20)
            )
        if kind == 2:
            return rng.choice([None, True, False])
        if kind == 3:
            return rng.choice([math.nan, math.inf, 1e-7, 1e21])
        if kind in (4, 5):
            return {f"k{i}": value(depth + 1) for i in range(3)}
        return [value(depth + 1) for _ in range(3)]

    for _ in range(2000):
        doc = value(0)
        assert json_text(doc) == json.dumps(doc)
    for bad in ({"set": {1, 2}}, {("tuple", "key"): 1}):
        with pytest.raises(TypeError):
            json.dumps(bad)
        with pytest.raises(TypeError):
            json_text(bad)
