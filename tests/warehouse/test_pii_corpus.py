"""Personal data and secrets in every free-text field the telemetry carries never reach the
warehouse, the training set or a trained router's files (scrub), and under hash no text of
theirs does at all.

The corpus goes in as a gateway sends it: prompts, completions and ground truth on LLM call
spans (OTLP, the fast path), user and team ids, request metadata, custom attributes, error
messages and fallback reasons in decision payloads (OTLP and a decision JSONL file, the general
path), a legacy traces.jsonl, and lines that are quarantined with the corpus in their excerpt
and in their reason.
"""

import contextlib
import json
from dataclasses import replace

import duckdb
import numpy as np
import pytest

from routeiq_assets.routers.config import load_router_config
from routeiq_assets.settings import REPO_ROOT
from routeiq_assets.telemetry.raw_store import land_file
from routeiq_assets.telemetry.simulator import (
    _export_request,
    decision_payload,
    request_spans,
    simulate_requests,
)
from routeiq_assets.training.labels import LabelingPolicy, build_routing_examples, load_prices
from routeiq_assets.training.train import data_from_warehouse, fit_and_save
from routeiq_assets.training.training_set import build_training_set
from routeiq_assets.warehouse.ingest import ingest_pending, register_raw_file
from routeiq_assets.warehouse.store import connect

_PEM_LINE = "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun"
# (text as a user or a gateway writes it, the part of it that must never be stored)
CORPUS = [
    ("paid on 2024-01-15 4111 1111 1111 1111 by card", "4111 1111 1111 1111"),
    ("card 5500-0000-0000-0004 expires soon", "5500-0000-0000-0004"),
    ("amex 378282246310005 please", "378282246310005"),
    (
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    ),
    ("aws_access_key_id AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLE"),
    ("use hf_AbCdEfGhIjKlMnOpQrStUvWxYz01234567 for the hub", "hf_AbCdEfGhIjKlMnOpQrStUvWxYz"),
    ("gitlab glpat-AbCd3fGh1jKlMn0pQrSt token", "glpat-AbCd3fGh1jKlMn0pQrSt"),
    ("slack xoxb-2048-4096-AbCdEfGhIjKlMnOp", "xoxb-2048-4096-AbCdEfGhIjKlMnOp"),
    ("stripe sk_live_4eC39HqLyjWDarjtT1zdp7dc", "sk_live_4eC39HqLyjWDarjtT1zdp7dc"),
    ("github ghp_16C7e42F292c6912E7710c838347Ae178B4a", "ghp_16C7e42F292c6912E7710c838347Ae178B4a"),
    ("maps AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe", "AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe"),
    ("openai sk-proj-Ab12Cd34Ef56Gh78Ij90", "sk-proj-Ab12Cd34Ef56Gh78Ij90"),
    ("anthropic sk-ant-api03-Zy98Xw76Vu54Ts32", "sk-ant-api03-Zy98Xw76Vu54Ts32"),
    ("write to josé.müller@bücher.de today", "josé.müller@bücher.de"),
    ("联系 用户@例子.广告 谢谢", "用户@例子.广告"),
    ("mail ann.lee+routing@example.com", "ann.lee+routing@example.com"),
    ("call +44 20 7946 0958 after lunch", "7946 0958"),
    (
        f"my key\n-----BEGIN RSA PRIVATE KEY-----\n{_PEM_LINE}\n{_PEM_LINE[::-1]}\n"
        "-----END RSA PRIVATE KEY-----",
        _PEM_LINE,
    ),
    (f"the body alone:\n{_PEM_LINE[::-1]}\n{_PEM_LINE}\nq7M=", _PEM_LINE[::-1]),
    ("Authorization: Bearer abcDEF123456ghiJKL789", "abcDEF123456ghiJKL789"),
]
SECRETS = [secret for _, secret in CORPUS]
MARKER = "Kestrelwing"  # starts every corpus prompt: scrub keeps it, hash must not
TEXTS = [f"{MARKER} {text}" for text, _ in CORPUS]


def _attr(key, value):
    return {"key": key, "value": {"stringValue": value}}


def _otlp_file(path, requests):
    """One export request a corpus text: it is the prompt, the completion, the ground truth,
    and every free-text field of the decision."""
    lines = []
    for req, text in zip(requests, TEXTS, strict=False):
        decision, call = request_spans(req)
        event = decision["events"][0]["attributes"][0]["value"]
        payload = json.loads(event["stringValue"])
        payload["input"].update(
            user_id=text,
            team_id=text,
            request_metadata={"note": text, text: [text, 4111111111111111]},
        )
        payload["outcome"]["error_message"] = text
        payload["fallback"]["fallback_reason"] = text
        payload["custom_attributes"] = {"ticket": text}
        event["stringValue"] = json.dumps(payload)
        call["attributes"] = [a for a in call["attributes"] if a["key"] != "gen_ai.completion"]
        call["attributes"] += [
            _attr("gen_ai.completion", text),
            _attr("routeiq.ground_truth", text),
        ]
        lines.append(json.dumps(_export_request([decision, call])))
    path.write_text("\n".join(lines) + "\n")
    return path


def _decision_jsonl(path, requests):
    """Decisions without trace context carrying the corpus, then two lines to quarantine: one
    whose contract version quotes a corpus text in its reason, one that is not JSON."""
    lines = []
    for req, text in zip(requests, TEXTS, strict=False):
        payload = decision_payload(req, trace_context=False)
        payload["event_id"] = f"jsonl-{req.event_id}"
        payload["input"].update(user_id=text, request_metadata={"q": text})
        payload["outcome"]["error_message"] = text
        lines.append(json.dumps(payload))
    for i, text in enumerate(TEXTS):
        lines.append(json.dumps({"contract_version": text, "event_id": f"bad-{i}"}))
        lines.append(f"not json: {text}".replace("\n", " "))
    path.write_text("\n".join(lines) + "\n")
    return path


def _legacy_jsonl(path):
    """The seed's traces.jsonl: the corpus as query, response and ground truth, and as a field
    of the wrong type (quarantined, its value quoted in the reason)."""
    lines = [
        {
            "query": text,
            "model_name": "gpt-4o",
            "response": text,
            "ground_truth": text,
            "performance": 0.5,
            "response_time": 1.0,
        }
        for text in TEXTS
    ]
    lines += [{"query": "q", "model_name": "gpt-4o", "input_tokens": text} for text in TEXTS]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def _stored_texts(db) -> list[str]:
    """Every text value of every table (VARCHAR and JSON columns), JSON also decoded, so that
    text outside ASCII is found however the column escaped it."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        columns = con.execute(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE data_type IN ('VARCHAR', 'JSON')"
        ).fetchall()
        texts = []
        for table, column in columns:
            for (value,) in con.execute(f'SELECT "{column}" FROM "{table}"').fetchall():
                if value is None:
                    continue
                texts.append(value)
                with contextlib.suppress(ValueError):
                    texts.append(json.dumps(json.loads(value), ensure_ascii=False))
    finally:
        con.close()
    assert {t for t, _ in columns} >= {"llm_calls", "router_decisions", "quarantine"}
    return texts


def _encoder(texts):
    """A deterministic stand-in embedding (the real encoder is tested elsewhere)."""
    return np.array([[len(t) % 7, t.count("e"), 1.0] for t in texts], np.float32)


def _found(secrets, texts):
    """The secrets found, each with the first text that holds it."""
    return sorted({s: t[:300] for s in secrets for t in texts if s in t}.items())


@pytest.mark.parametrize("mode", ["scrub", "hash"])
def test_no_corpus_text_reaches_the_warehouse_or_a_router(tmp_path, mode):
    requests = list(simulate_requests(len(CORPUS) + 120, seed=41))
    corpus_requests = [replace(r, query=t) for r, t in zip(requests, TEXTS, strict=False)]
    landing = tmp_path / "landing"
    landing.mkdir()
    files = [
        _otlp_file(landing / "calls.otlp.json", corpus_requests),
        _decision_jsonl(landing / "decisions.jsonl", requests[len(CORPUS) :][: len(CORPUS)]),
        _legacy_jsonl(landing / "traces.jsonl"),
    ]
    # clean traffic beside it, so that the training split is never empty
    clean = [json.dumps(_export_request(request_spans(r))) for r in requests[len(CORPUS) :]]
    files.append(landing / "clean.otlp.json")
    files[-1].write_text("\n".join(clean) + "\n")
    db = tmp_path / "w.duckdb"
    with connect(db) as con:
        for path in files:
            register_raw_file(con, land_file(path, tmp_path / "raw"))
        counts = [c for _, c in ingest_pending(con, mode)]
        assert sum(c.quarantined for c in counts) == 3 * len(CORPUS)
        assert sum(c.decisions for c in counts) == len(requests) + len(CORPUS)
        prices = load_prices(REPO_ROOT / "configs" / "prices.yaml")
        examples = build_routing_examples(con, prices, LabelingPolicy())
        if mode == "scrub":
            build_training_set(con)
            queries = [q for (q,) in con.execute("SELECT query_text FROM training_set").fetchall()]
            data = data_from_warehouse(con, "stand-in", _encoder, lambda _m: None)
    texts = _stored_texts(db)
    assert _found(SECRETS, texts) == []
    if mode == "hash":
        # nothing readable of the corpus: no marker, no text, no word of eight letters or more
        words = {w for text in TEXTS for w in text.split() if len(w) >= 8 and "-" not in w}
        assert _found([MARKER, *TEXTS, *words], texts) == []
        assert examples["logged_examples"] == 0
        return
    # scrub keeps the words: the corpus reached every table it was sent to, scrubbed
    assert sum(MARKER in q for q in queries) >= len(CORPUS) // 2
    con = duckdb.connect(str(db), read_only=True)
    reached = {
        table: con.execute(
            f"SELECT count(*) FROM {table} WHERE {column} LIKE '%{MARKER}%'"
        ).fetchall()[0][0]
        for table, column in (
            ("llm_calls", "ground_truth"),
            ("llm_calls", "completion"),
            ("router_decisions", "user_id"),
            ("router_decisions", "request_metadata"),
            ("router_decisions", "error_message"),
            ("quarantine", "raw_excerpt"),
            ("quarantine", "reason"),
            ("routing_examples", "query_text"),
        )
    }
    con.close()
    assert all(reached.values()), reached
    # a router trained on it holds none of the corpus in its files
    config = load_router_config(REPO_ROOT / "configs" / "routers" / "knn.yaml")
    result = fit_and_save("knn", config, data, tmp_path / "routers")
    written = [
        p.read_bytes().decode("utf-8", "replace") for p in result.folder.rglob("*") if p.is_file()
    ]
    assert any(p.name == "router.json" for p in result.folder.rglob("*"))
    assert _found(SECRETS, written) == []
