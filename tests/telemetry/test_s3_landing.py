"""The S3 prefix sensor against a real HTTP S3 endpoint (a moto server): new objects are mirrored
into the landing folder once, a changed object again, a copy under another key becomes no new
batch, and an unreachable endpoint is a clear error."""

import json
from pathlib import Path

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


def test_keys_that_leave_the_landing_folder_are_refused(tmp_path):
    # boto3 against moto collapses ".." in a key's URL, so such keys cannot be stored there;
    # S3 itself keeps them. A client with S3's listing and download calls serves them here.
    keys = ["in/ok.jsonl", "in/../../../escaped.jsonl", "in/a/../../b.jsonl", "/in/abs.jsonl"]

    class Bucket:
        def get_paginator(self, _name):
            return self

        def paginate(self, **_kwargs):
            return [{"Contents": [{"Key": k, "ETag": '"e"'} for k in keys]}]

        def download_file(self, _bucket, _key, path):
            Path(path).write_bytes(b'{"event_id": "e"}\n')

    landing = tmp_path / "deep" / "landing"
    result = mirror_prefix(Bucket(), "s3://b/", landing, {})
    assert [p.name for p in result.downloaded] == ["ok.jsonl"]
    # ".." parts start with a dot: skipped as hidden names; a leading "/" is refused
    assert [k for k, _ in result.failed] == ["/in/abs.jsonl"]
    assert "outside the landing folder" in result.failed[0][1]
    assert [p.name for p in tmp_path.rglob("*.jsonl")] == ["ok.jsonl"]


def test_objects_that_keep_failing_are_tried_after_new_ones_within_the_budget(
    tmp_path, s3_server, bucket
):
    s3 = boto3.client("s3", endpoint_url=s3_server["endpoint"])
    bad = [f"in/{c}{'x' * 300}.jsonl" for c in "abc"]  # names no file system here takes
    for key in bad:
        s3.put_object(Bucket=bucket, Key=key, Body=b"x\n")
    first = mirror_prefix(s3, f"s3://{bucket}/in/", tmp_path, {}, max_objects=2)
    assert [k for k, _ in first.failed] == bad[:2]  # two tries, the budget
    cursor = json.loads(first.cursor_json())
    assert set(cursor["failed"]) == set(bad[:2])

    s3.put_object(Bucket=bucket, Key="in/zz-new.jsonl", Body=b'{"event_id": "n"}\n')
    second = mirror_prefix(
        s3, f"s3://{bucket}/in/", tmp_path, first.seen, max_objects=2, failed_before=first.retry
    )
    # the new objects first (c was never tried, z is new), then what failed before, in budget
    assert [p.name for p in second.downloaded] == ["zz-new.jsonl"]
    assert [k for k, _ in second.failed] == [bad[2]]
    assert set(second.retry) == set(bad)  # a and b wait their turn, c failed now
