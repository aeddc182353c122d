import base64
import json

from routeiq_assets.telemetry.otlp import normalise_id, read_otlp_json
from routeiq_assets.telemetry.simulator import simulate_requests, write_otlp_files


def test_reads_every_decision_and_call(tmp_path):
    (path,) = write_otlp_files(simulate_requests(120, seed=2), tmp_path, "x")
    records = list(read_otlp_json(path))
    kinds = [r.kind for r in records]
    assert kinds.count("decision") == 120 and kinds.count("llm_call") == 120
    call = next(r for r in records if r.kind == "llm_call")
    assert call.data["attributes"]["gen_ai.prompt"]
    assert call.data["duration_ms"] > 0


def test_bad_lines_become_bad_records_with_location(tmp_path):
    (path,) = write_otlp_files(simulate_requests(10, seed=2), tmp_path, "x", requests_per_line=5)
    good = path.read_bytes().splitlines()
    broken = tmp_path / "broken.otlp.json"
    broken.write_bytes(b"\n".join([good[0], good[1][:200], b"\xff\xfe not utf8", b"[1,2]", b""]))
    records = list(read_otlp_json(broken))
    bad = [r for r in records if r.kind == "bad"]
    assert [r.location for r in bad] == [
        "broken.otlp.json:2",
        "broken.otlp.json:3",
        "broken.otlp.json:4",
    ]
    assert "not JSON" in bad[0].reason and "not UTF-8" in bad[1].reason
    assert "resourceSpans" in bad[2].reason
    assert sum(r.kind == "decision" for r in records) == 5


def test_ids_accept_hex_and_base64():
    raw = bytes(range(16))
    assert normalise_id(raw.hex().upper(), 32) == raw.hex()
    assert normalise_id(base64.b64encode(raw).decode(), 32) == raw.hex()
    assert normalise_id("not-an-id", 32) is None


def test_span_without_ids_is_bad(tmp_path):
    (path,) = write_otlp_files(simulate_requests(1, seed=2), tmp_path, "x")
    doc = json.loads(path.read_text())
    doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"] = ""
    path.write_text(json.dumps(doc))
    kinds = [(r.kind, r.reason) for r in read_otlp_json(path)]
    assert ("bad", "span has no valid traceId/spanId") in kinds
