"""Normalise batches in worker processes while the caller writes them, in order.

Each worker is ``python -m routeiq_assets.warehouse.workers``: a fresh interpreter (never a fork
of a process holding DuckDB, and no re-import of the caller's ``__main__``) that reads one job a
line on stdin, normalises the file, writes the tables as Arrow IPC files into the job's folder
and answers one JSON line on stdout. The caller memory-maps the tables, so a finished batch
waiting its turn costs disk, not memory.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from routeiq_assets.warehouse.columnar import ColumnarBatch, as_columnar
from routeiq_assets.warehouse.normalize import NormalisedBatch
from routeiq_assets.warehouse.otlp_fast import resolved_part

# queued on each worker, so it never waits for the writer (which writes several batches at once)
JOBS_PER_WORKER = 4


def _write(batch: NormalisedBatch | ColumnarBatch, out: Path) -> dict[str, Any]:
    columnar = batch if isinstance(batch, ColumnarBatch) else as_columnar(batch)
    out.mkdir(parents=True, exist_ok=True)
    tables = []
    for name, table in columnar.tables.items():
        if table is None:
            continue
        with (
            pa.OSFile(str(out / f"{name}.arrow"), "wb") as sink,
            pa.ipc.new_file(sink, table.schema) as writer,
        ):
            writer.write_table(table)
        tables.append(name)
    return {
        "ok": True,
        "tables": tables,
        "records_in": columnar.records_in,
        "duplicates_in_batch": columnar.duplicates_in_batch,
        "fast_records": columnar.fast_records,
    }


def _read(answer: dict[str, Any], out: Path) -> ColumnarBatch:
    tables: dict[str, pa.Table | None] = dict.fromkeys(
        ("router_decisions", "decision_candidates", "llm_calls", "feedback", "quarantine")
    )
    for name in answer["tables"]:
        with pa.memory_map(str(out / f"{name}.arrow")) as source:
            tables[name] = pa.ipc.open_file(source).read_all()
    return ColumnarBatch(
        tables, answer["records_in"], answer["duplicates_in_batch"], answer["fast_records"]
    )


def normalise_in_workers(jobs: Sequence[tuple[Any, ...]], workers: int) -> Iterator[ColumnarBatch]:
    """The batches of ``jobs`` (``normalise_file`` arguments), in order, normalised by
    ``workers`` processes; each batch's files are removed once the next one is asked for."""
    tmp = Path(tempfile.mkdtemp(prefix="routeiq-normalise-"))
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "routeiq_assets.warehouse.workers"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(max(1, min(workers, len(jobs))))
    ]

    def submit(i: int) -> None:
        if i < len(jobs):
            path, fmt, batch_id, source, prompt_mode, part = jobs[i]
            job = {
                "part": resolved_part(part),  # (a line to count: counted here)
                "path": str(path),
                "fmt": fmt,
                "batch_id": batch_id,
                "source": source,
                "prompt_mode": prompt_mode,
                "out": str(tmp / str(i)),
            }
            proc = procs[i % len(procs)]
            assert proc.stdin is not None
            try:
                proc.stdin.write(json.dumps(job) + "\n")
                proc.stdin.flush()
            except OSError as exc:  # a broken pipe: the worker died (killed, out of memory)
                raise RuntimeError(
                    f"normalising worker exited ({proc.wait()}) before it was given {path}"
                ) from exc

    finished = False
    try:
        for i in range(len(procs) * JOBS_PER_WORKER):
            submit(i)
        for i in range(len(jobs)):
            proc = procs[i % len(procs)]
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(
                    f"normalising worker exited ({proc.wait()}) while reading {jobs[i][0]}"
                )
            answer = json.loads(line)
            if not answer["ok"]:
                raise RuntimeError(f"normalising {jobs[i][0]} failed:\n{answer['error']}")
            submit(i + len(procs) * JOBS_PER_WORKER)
            yield _read(answer, tmp / str(i))
            shutil.rmtree(tmp / str(i), ignore_errors=True)
        finished = True
    finally:
        # nothing here may hide the error that ended the loop, or skip the rest: a dead
        # worker's pipe refuses the close (its unsent job), and after an error (or when the
        # caller stops early) the workers' queued jobs are of no use: they are killed
        try:
            for proc in procs:
                if proc.stdin is not None:
                    with contextlib.suppress(OSError):
                        proc.stdin.close()
            for proc in procs:
                if not finished:
                    proc.kill()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    """The worker: one JSON job a line in, one JSON answer a line out."""
    from routeiq_assets.warehouse.ingest import normalise_file

    for line in sys.stdin:
        job = json.loads(line)
        batch = None
        try:
            part = tuple(job["part"]) if job["part"] is not None else None
            batch = normalise_file(
                Path(job["path"]),
                job["fmt"],
                job["batch_id"],
                job["source"],
                job["prompt_mode"],
                part=part,
            )
            answer = _write(batch, Path(job["out"]))
        except Exception:
            answer = {"ok": False, "error": traceback.format_exc()}
        del batch
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
