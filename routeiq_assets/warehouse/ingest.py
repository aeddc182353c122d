"""Raw files to normalised tables: read, normalise, write, one batch (file) at a time."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from routeiq_assets.telemetry.pii import PromptTextMode
from routeiq_assets.telemetry.raw_store import RawFile
from routeiq_assets.telemetry.readers import read_records
from routeiq_assets.warehouse.normalize import normalise_records
from routeiq_assets.warehouse.store import BatchCounts, pending_batches, write_batch


def register_raw_file(con: duckdb.DuckDBPyConnection, raw: RawFile) -> bool:
    """Record a landed file; return False when the same bytes were landed before."""
    exists = con.execute("SELECT 1 FROM raw_files WHERE batch_id = ?", [raw.batch_id]).fetchall()
    if exists:
        return False
    con.execute(
        "INSERT INTO raw_files BY NAME SELECT ? AS batch_id, ? AS sha256, ? AS original_name,"
        " ? AS raw_path, ? AS format, ? AS size_bytes, ? AS landed_at",
        [
            raw.batch_id,
            raw.sha256,
            raw.original_name,
            str(raw.raw_path),
            raw.format,
            raw.size_bytes,
            datetime.now(UTC).replace(tzinfo=None),
        ],
    ).fetchall()
    return True


def ingest_batch(
    con: duckdb.DuckDBPyConnection,
    batch_id: str,
    raw_path: Path,
    fmt: str,
    source: str,
    prompt_mode: PromptTextMode = "scrub",
    log: Callable[[str], None] = lambda _msg: None,
) -> BatchCounts:
    """Normalise one landed batch and replace its rows in one transaction."""
    records = read_records(Path(raw_path), fmt)
    batch = normalise_records(records, batch_id, source, prompt_mode)
    log(f"writing batch {batch_id} ({source}): {batch.records_in} records")
    return write_batch(con, batch_id, batch)


def ingest_registered(
    con: duckdb.DuckDBPyConnection,
    batch_id: str,
    prompt_mode: PromptTextMode = "scrub",
    log: Callable[[str], None] = lambda _msg: None,
) -> BatchCounts:
    """Ingest a batch already in ``raw_files`` (the partitioned asset's path)."""
    row = con.execute(
        "SELECT raw_path, format, original_name FROM raw_files WHERE batch_id = ?", [batch_id]
    ).fetchall()
    if not row:
        raise ValueError(
            f"batch {batch_id} is not in raw_files: materialise raw_traces for it first"
        )
    raw_path, fmt, name = row[0]
    return ingest_batch(con, batch_id, Path(raw_path), fmt, name, prompt_mode, log)


def ingest_pending(
    con: duckdb.DuckDBPyConnection,
    log: Callable[[str], None] = lambda _msg: None,
    prompt_mode: PromptTextMode = "scrub",
) -> list[tuple[str, BatchCounts]]:
    """Normalise every landed batch not yet in the ingest log."""
    done = []
    pending = pending_batches(con)
    for i, (batch_id, raw_path, fmt, name) in enumerate(pending, start=1):
        counts = ingest_batch(con, batch_id, Path(raw_path), fmt, name, prompt_mode)
        log(
            f"[{i}/{len(pending)}] {name}: {counts.records_in} records -> {counts.decisions} "
            f"decisions, {counts.llm_calls} llm calls, {counts.duplicates} duplicates, "
            f"{counts.quarantined} quarantined"
        )
        done.append((batch_id, counts))
    return done
