"""OTLP JSON files through the compiled normaliser (``_otlp_native.c``), where it is built.

The Python fast path (:mod:`~routeiq_assets.warehouse.otlp_fast`) spends most of its time on
Python objects: a struct per span, attribute and payload field, a tuple per row, and Arrow
conversion of every value. The compiled normaliser scans an export request line and writes each
field straight into column buffers that become Arrow arrays without a copy per value. It accepts
a strict subset of what the Python path accepts (see the C file's header); at the first line
outside it, it stops, that line goes the Python way, and it carries on after it. The parts are
joined in file order by :func:`~routeiq_assets.warehouse.otlp_fast.merge_parts`, so duplicates
across them count as in one pass. What the Python side does here is per distinct value, not per
row: JSON columns (``json.dumps`` of the decoded object), prompt scrubbing and hashing (the
batch's :class:`~routeiq_assets.warehouse.normalize.TextMemo`); timestamps in one Arrow cast
when they are plain UTC text, else per row (``datetime.fromisoformat``, as the Python path).

Built by ``pip install`` (``setup.py``) where a C compiler is found; without one, or with
``ROUTEIQ_NATIVE_OTLP=0``, everything goes the Python way with identical results.
``tests/warehouse/test_otlp_native.py`` compares the two paths table by table.
"""

from __future__ import annotations

import hashlib
import logging
import mmap
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pyarrow as pa
import pyarrow.compute as pc

from routeiq_assets.telemetry.pii import PromptTextMode, array_for_warehouse
from routeiq_assets.telemetry.records import BOM
from routeiq_assets.warehouse.columnar import BatchBuilder, ColumnarBatch, infer_array
from routeiq_assets.warehouse.normalize import (
    CANDIDATE_COLUMNS,
    DECISION_COLUMNS,
    LLM_CALL_COLUMNS,
    TextMemo,
    _parse_ts,
    custom_fields,
    json_text,
)

try:  # built by setup.py where a C compiler was found
    from routeiq_assets.warehouse import _otlp_native as _native
except ImportError:  # pragma: no cover - depends on the install
    _native = None

log = logging.getLogger(__name__)


def _stale(module: Any) -> bool:
    """In a source tree: the C file differs from what the module was built from (an edit
    whose rebuild failed, or was never run: `pip install -e .`)."""
    source = Path(__file__).with_name("_otlp_native.c")
    if module is None or not source.exists():
        return False
    return hashlib.sha256(source.read_bytes()).hexdigest() != getattr(module, "SOURCE_SHA256", "")


if _stale(_native):
    log.warning(
        "the compiled OTLP normaliser was built from another _otlp_native.c: using the Python "
        "path until `pip install -e .` rebuilds it (its output says why a build failed)"
    )
    _native = None

ENV_SWITCH = "ROUTEIQ_NATIVE_OTLP"
# Rows a parse() call builds before its buffers become Arrow arrays (bounds their memory).
CHUNK_RECORDS = 16_384
# After this many lines of a range went the Python way, the rest of the range goes that way
# too: each one splits the range into parts that must be joined and deduplicated.
MAX_STOPS = 16

_KINDS = {"string": pa.string(), "int64": pa.int64(), "float64": pa.float64(), "bool": pa.bool_()}
_COLUMNS: list[tuple[str, str]] = _native.columns() if _native is not None else []
_INDEX = {name: i for i, (name, _) in enumerate(_COLUMNS)}
_DICT = msgspec.json.Decoder(dict[str, Any])


def available() -> bool:
    """Whether the compiled normaliser was built and is switched on."""
    return _native is not None and os.environ.get(ENV_SWITCH, "1") != "0"


class NotNative(Exception):
    """This range needs the Python path from its start (a JSON column its decoder refuses)."""


def normalise_native(
    path: Path,
    batch_id: str,
    source: str,
    prompt_mode: PromptTextMode,
    part: tuple[int, int, int] | None,
    python_part: Callable[[tuple[int, int, int]], ColumnarBatch],
    merge: Callable[[list[ColumnarBatch]], ColumnarBatch],
) -> ColumnarBatch:
    """One OTLP JSON file (or ``part`` of it) as a batch, through the compiled normaliser.

    ``python_part((start, end, first_line))`` normalises lines the Python way (end -1: to the
    end of the file); ``merge`` joins the batches of consecutive parts in file order.
    """
    assert _native is not None
    start, end, line = part or (0, -1, 1)
    size = path.stat().st_size
    stop_at = size if end < 0 else min(end, size)
    try:
        file_name = path.name.encode("utf-8")
    except UnicodeEncodeError:  # a name with undecodable bytes: as the Python path writes it
        return python_part((start, end, line))
    if start >= stop_at:
        return python_part((start, end, line))
    memo = TextMemo(prompt_mode)
    parts: list[ColumnarBatch] = []
    with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        if start == 0 and mm[: len(BOM)] == BOM:
            start = len(BOM)
        chunks: list[list[pa.Array]] = []
        stops = 0
        while start < stop_at:
            if stops >= MAX_STOPS:
                break
            begun = start
            columns, start, line, stopped = _native.parse(
                mm, start, stop_at, line, file_name, CHUNK_RECORDS
            )
            _forget(mm, begun, start)
            chunks.append(
                [_array(kind, col) for (_, kind), col in zip(_COLUMNS, columns, strict=True)]
            )
            if stopped:
                parts.append(_segment(chunks, batch_id, memo))
                chunks = []
                eol = mm.find(b"\n", start)
                eol = size if eol < 0 else eol + 1
                parts.append(python_part((start, eol, line)))
                start, line, stops = eol, line + 1, stops + 1
        if chunks:
            parts.append(_segment(chunks, batch_id, memo))
    if start < stop_at:  # too many lines went the Python way: the rest does too
        parts.append(python_part((start, end, line)))
    native_records = sum(p.records_in for p in parts if p.stats.get("native"))
    parts = [p for p in parts if p.records_in] or parts[:1]
    try:
        batch = merge(parts) if parts else BatchBuilder(batch_id, source, prompt_mode).finish()
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        # a column typed differently by its parts (text natively, numbers the Python way): the
        # Python path types it over the whole range, as it would have alone
        raise NotNative("parts of differently typed columns") from None
    batch.stats.update(native_records=native_records, python_lines=stops)
    return batch


def _forget(mm: mmap.mmap, start: int, end: int) -> None:
    """Drop the pages of lines already read from this process's memory (they stay in the page
    cache): a 185 MB file would otherwise count in full towards the peak RSS of its reader."""
    first = start - start % mmap.PAGESIZE
    if end > first:
        mm.madvise(mmap.MADV_DONTNEED, first, end - first)


def _array(kind: str, col: tuple[int, int, bytes | None, bytes, bytes | None]) -> pa.Array:
    n, nulls, valid, data, offsets = col
    validity = None if valid is None else pa.py_buffer(valid)
    if kind == "string":
        buffers = [validity, pa.py_buffer(offsets), pa.py_buffer(data)]
    else:
        buffers = [validity, pa.py_buffer(data)]
    return pa.Array.from_buffers(_KINDS[kind], n, buffers, null_count=nulls)


def _segment(chunks: list[list[pa.Array]], batch_id: str, memo: TextMemo) -> ColumnarBatch:
    """The rows of consecutive parse() calls as one batch: duplicates (the first of an event id
    or a trace and span id is kept) counted and dropped, as ``BatchBuilder`` does."""
    cols: dict[str, pa.ChunkedArray] = {}
    owner_chunks = []
    decisions_before = 0
    for chunk in chunks:
        owner_chunks.append(pc.add(chunk[_INDEX["c.decision"]], decisions_before))
        decisions_before += len(chunk[_INDEX["d.event_id"]])
    for name, i in _INDEX.items():
        arrays = owner_chunks if name == "c.decision" else [c[i] for c in chunks]
        cols[name] = pa.chunked_array(arrays, type=_KINDS[_COLUMNS[i][1]])
    _check_lengths(cols)
    n_dec, n_calls = len(cols["d.event_id"]), len(cols["l.trace_id"])
    decisions = _decisions(cols, batch_id) if n_dec else None
    candidates = _candidates(cols, batch_id) if len(cols["c.model_name"]) else None
    calls = _calls(cols, batch_id, memo) if n_calls else None

    duplicates = 0  # repeats: counted and dropped, the first of each key kept
    if decisions is not None and _has_repeats(cols["d.event_id"]):
        keep = pa.array(_first_seen(cols["d.event_id"].to_pylist()), pa.bool_())
        duplicates += len(keep) - pc.sum(keep).as_py()
        decisions = decisions.filter(keep)
        if candidates is not None:
            candidates = candidates.filter(pc.take(keep, cols["c.decision"]))
    if calls is not None:
        call_keys = pc.binary_join_element_wise(cols["l.trace_id"], cols["l.span_id"], "/")
        if _has_repeats(call_keys):
            keep = pa.array(_first_seen(call_keys.to_pylist()), pa.bool_())
            duplicates += len(keep) - pc.sum(keep).as_py()
            calls = calls.filter(keep)
    tables = {
        "router_decisions": decisions,
        "decision_candidates": candidates if candidates is None or candidates.num_rows else None,
        "llm_calls": calls,
        "feedback": None,
        "quarantine": None,
    }
    records = n_dec + n_calls
    return ColumnarBatch(tables, records, duplicates, records, {"native": True})


def _check_lengths(cols: dict[str, pa.ChunkedArray]) -> None:
    for prefix in ("d.", "c.", "l."):
        lengths = {len(a) for name, a in cols.items() if name.startswith(prefix)}
        if len(lengths) > 1:  # a bug in the C file, never bad input
            raise RuntimeError(f"compiled normaliser: {prefix} columns of unequal lengths")


def _has_repeats(column: pa.ChunkedArray) -> bool:
    return pc.count_distinct(column).as_py() != len(column)


def _first_seen(keys: list[Any]) -> list[bool]:
    seen: set[Any] = set()
    keep = []
    for key in keys:
        keep.append(key not in seen)
        seen.add(key)
    return keep


def _encode(column: pa.ChunkedArray) -> pa.DictionaryArray:
    """The column's distinct non-null values and each row's index into them."""
    return pc.dictionary_encode(column).combine_chunks()


def _per_distinct(column: pa.ChunkedArray, fn: Callable[[str], Any]) -> tuple[list[Any], pa.Array]:
    """``fn`` of each distinct non-null value, and each row's index into that list."""
    encoded = _encode(column)
    return [fn(v) for v in encoded.dictionary.to_pylist()], encoded.indices


def _constant(text: str, n: int) -> pa.Array:
    return pa.repeat(pa.scalar(text, pa.string()), n)


def _take(values: list[Any], indices: pa.Array, kind: pa.DataType) -> pa.Array:
    return pa.array(values, type=kind).take(indices)


def _object(raw: str) -> dict[str, Any]:
    try:
        return _DICT.decode(raw.encode("utf-8"))
    except (msgspec.DecodeError, RecursionError) as exc:  # JSON the C scanner took, msgspec not
        raise NotNative(str(exc)) from None


def _inferred(column: pa.ChunkedArray) -> pa.Array:
    """A string column whose Arrow type the Python path infers from its values: null when every
    value is None (``pa.array([None, ...])``), else string."""
    if column.null_count == len(column):
        return pa.nulls(len(column))
    return column.combine_chunks()


# What gateways send: UTC, "Z", up to microseconds; fields in range (Arrow checks the date).
_ISO_UTC = (
    r"^[1-9][0-9]{3}-[0-9]{2}-[0-9]{2}"
    r"T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?Z$"
)


def _timestamps(texts: pa.ChunkedArray, unix_ms: pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """timestamp_utc as ``_parse_ts`` reads each row (``datetime.fromisoformat``, else the unix
    milliseconds) and Arrow types the column; in one cast when every value is plain UTC ISO
    text, the same instants and type (timestamp[us, tz=UTC])."""
    if texts.null_count == 0 and pc.all(pc.match_substring_regex(texts, _ISO_UTC)).as_py():
        try:
            return pc.cast(texts, pa.timestamp("us", tz="UTC"))
        except pa.ArrowInvalid:  # a day that does not exist: the row-by-row reading decides
            pass
    rows = zip(texts.to_pylist(), unix_ms.to_pylist(), strict=True)
    return infer_array([_parse_ts(text, ms) for text, ms in rows])


def _decisions(cols: dict[str, pa.ChunkedArray], batch_id: str) -> pa.Table:
    n = len(cols["d.event_id"])
    metadata, meta_index = _per_distinct(
        cols["d.request_metadata"], lambda raw: json_text(_object(raw))
    )
    customs, custom_index = _per_distinct(
        cols["d.custom_attributes"], lambda raw: custom_fields(_object(raw))
    )
    custom_rows = custom_index.to_pylist()
    derived = {
        "batch_id": _constant(batch_id, n),
        "timestamp_utc": _timestamps(cols["d.timestamp_utc"], cols["d.timestamp_unix_ms"]),
        "request_metadata": _take(metadata, meta_index, pa.string()),
        "selection_propensity": _take([c[1] for c in customs], custom_index, pa.float64()),
        "logging_policy": infer_array([customs[i][2] for i in custom_rows]),
        "quality_score": _take([c[3] for c in customs], custom_index, pa.float64()),
        "custom_attributes": _take([c[0] for c in customs], custom_index, pa.string()),
    }
    arrays = [derived[c] if c in derived else cols[f"d.{c}"] for c in DECISION_COLUMNS]
    return pa.Table.from_arrays(arrays, DECISION_COLUMNS)


def _candidates(cols: dict[str, pa.ChunkedArray], batch_id: str) -> pa.Table:
    owner = cols["c.decision"]
    derived = {
        "event_id": pc.take(cols["d.event_id"], owner),
        "batch_id": _constant(batch_id, len(owner)),
        "position": cols["c.position"],
        "model_name": cols["c.model_name"],
        "provider": cols["c.provider"],
        "score": cols["c.score"],
        "available": cols["c.available"],
        "is_selected": cols["c.is_selected"],
    }
    return pa.Table.from_arrays([derived[c] for c in CANDIDATE_COLUMNS], CANDIDATE_COLUMNS)


def _stored(encoded: pa.DictionaryArray, prompt_mode: PromptTextMode) -> pa.Array:
    """What the warehouse stores of each text of a dictionary-encoded column, worked out once
    per distinct text (``array_for_warehouse``: when scrubbing, over the column at once)."""
    return array_for_warehouse(encoded.dictionary, prompt_mode).take(encoded.indices)


def _calls(cols: dict[str, pa.ChunkedArray], batch_id: str, memo: TextMemo) -> pa.Table:
    n = len(cols["l.trace_id"])
    prompts = _encode(cols["l.prompt"])  # once, for the text and its hash
    hashes = [memo.sha256(text) for text in prompts.dictionary.to_pylist()]
    derived = {
        "batch_id": _constant(batch_id, n),
        "span_name": _inferred(cols["l.span_name"]),
        "prompt_text": _stored(prompts, memo.prompt_mode),
        "prompt_sha256": _take(hashes, prompts.indices, pa.string()),
        "request_model": _inferred(cols["l.request_model"]),
        "response_model": _inferred(cols["l.response_model"]),
        "completion": _stored(_encode(cols["l.completion"]), memo.prompt_mode),
        "task": _inferred(cols["l.task"]),
    }
    arrays = [derived[c] if c in derived else cols[f"l.{c}"] for c in LLM_CALL_COLUMNS]
    return pa.Table.from_arrays(arrays, LLM_CALL_COLUMNS)
