"""The S3 prefix sensor against a real HTTP S3 endpoint (a moto server): new objects are mirrored
into the landing folder once, a changed object again, a copy under another key becomes no new
batch, and an unreachable endpoint is a clear error."""

import json

import boto3
import dagster as dg
import pytest

from routeiq_assets.defs.automation import s3_landing_sensor
from routeiq_assets.defs.resources import RouteIQResource
from routeiq_assets.telemetry.landing import scan_landing
from routeiq_assets.telemetry.s3_landing import S3LandingError, mirror_prefix
from tests.deployment.conftest import bucket, s3_server  # noqa: F401 (fixtures)

# ruff: noqa: F811  (the imported fixtures are parameters below)


def _tick(home, cursor):
    context = dg.build_sensor_context(
        cursor=cursor, resources={"routeiq": RouteIQResource(home=str(home))}
    )
    result = s3_landing_sensor(context)
    return result, context.cursor


def test_prefix_objects_reach_the_landing_folder_once(
    routeiq_home,
    s3_server,
    bucket,
    monkeypatch,
):
    s3 = boto3.client("s3", endpoint_url=s3_server["endpoint"])
    body = b'{"event_id": "e1"}\n'
    s3.put_object(Bucket=bucket, Key="telemetry/2026/a.jsonl", Body=body)
    s3.put_object(Bucket=bucket, Key="telemetry/2026/b.jsonl", Body=b'{"event_id": "e2"}\n')
    s3.put_object(Bucket=bucket, Key="telemetry/.hidden", Body=b"x")
    s3.put_object(Bucket=bucket, Key="elsewhere/c.jsonl", Body=b"y")

    skipped, _ = _tick(routeiq_home, None)
    assert "ROUTEIQ_LANDING_S3_URI is not set" in skipped.skip_message
    monkeypatch.setenv("ROUTEIQ_LANDING_S3_URI", f"s3://{bucket}/telemetry/")
    monkeypatch.setenv("ROUTEIQ_S3_ENDPOINT_URL", s3_server["endpoint"])
    result, cursor = _tick(routeiq_home, None)
    assert "mirrored 2 objects" in result.skip_message
    landing = routeiq_home / "landing"
    mirrored = sorted(p.relative_to(landing).as_posix() for p in landing.rglob("*") if p.is_file())
    assert mirrored == [
        f"s3/{bucket}/telemetry/2026/a.jsonl",
        f"s3/{bucket}/telemetry/2026/b.jsonl",
    ]
    assert (landing / "s3" / bucket / "telemetry/2026/a.jsonl").read_bytes() == body

    again, cursor = _tick(routeiq_home, cursor)
    assert "no new objects (2 already mirrored)" in again.skip_message

    # an overwritten object is new content; a copy under another key is mirrored, but the
    # landing scan knows its content already
    s3.put_object(Bucket=bucket, Key="telemetry/2026/a.jsonl", Body=b'{"event_id": "e3"}\n')
    s3.copy_object(
        Bucket=bucket,
        Key="telemetry/copy.jsonl",
        CopySource={"Bucket": bucket, "Key": "telemetry/2026/b.jsonl"},
    )
    changed, cursor = _tick(routeiq_home, cursor)
    assert "mirrored 2 objects" in changed.skip_message
    assert set(json.loads(cursor)["objects"]) == {
        "telemetry/2026/a.jsonl",
        "telemetry/2026/b.jsonl",
        "telemetry/copy.jsonl",
    }
    scan = scan_landing(landing, {}, set(), settle_seconds=0)
    assert len(scan.ready) == 2 and len(scan.known) == 1  # the copy is the same content as b


def test_unreachable_endpoint_is_a_clear_error(tmp_path):
    client = boto3.client(
        "s3",
        endpoint_url="http://127.0.0.1:9",
        aws_access_key_id="x",
        aws_secret_access_key="y",
        region_name="us-east-1",
        config=__import__("botocore.config").config.Config(
            retries={"max_attempts": 1}, connect_timeout=1
        ),
    )
    with pytest.raises(S3LandingError, match="could not list s3://telemetry/in"):
        mirror_prefix(client, "s3://telemetry/in", tmp_path, {})
    with pytest.raises(ValueError, match="expected s3://bucket/prefix"):
        mirror_prefix(client, "/not/s3", tmp_path, {})


def test_an_object_that_cannot_be_mirrored_does_not_hold_back_the_others(
    routeiq_home, s3_server, bucket, monkeypatch
):
    s3 = boto3.client("s3", endpoint_url=s3_server["endpoint"])
    # a key whose last part is longer than a file name may be here: its download fails
    bad = f"telemetry/{'x' * 300}.jsonl"
    for key in ("telemetry/a.jsonl", bad, "telemetry/z.jsonl"):
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode()[-20:] + b"\n")
    monkeypatch.setenv("ROUTEIQ_LANDING_S3_URI", f"s3://{bucket}/telemetry/")
    monkeypatch.setenv("ROUTEIQ_S3_ENDPOINT_URL", s3_server["endpoint"])
    result, cursor = _tick(routeiq_home, None)
    assert "mirrored 2 objects" in result.skip_message
    assert "1 could not be mirrored" in result.skip_message
    assert set(json.loads(cursor)["objects"]) == {"telemetry/a.jsonl", "telemetry/z.jsonl"}
    landing = routeiq_home / "landing" / "s3" / bucket / "telemetry"
    assert sorted(p.name for p in landing.iterdir()) == ["a.jsonl", "z.jsonl"]  # no .part left
    again, _ = _tick(routeiq_home, cursor)  # tried again, and reported again
    assert "no new objects (2 already mirrored); 1 could not be mirrored" in again.skip_message
