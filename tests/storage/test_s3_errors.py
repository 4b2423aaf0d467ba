"""Wrong credentials and unreachable endpoints: a clear error, non-zero exit, nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest

from zoo.cli import main
from zoo.errors import StoreAuthError, StoreUnreachableError
from zoo.index.export import write_tiny_export
from zoo.index.publish import publish
from zoo.storage.s3 import S3Store
from zoo.storage.seaweed import SeaweedServer, free_ports

from .conftest import BUCKET


def _objects(seaweed: SeaweedServer, prefix: str) -> list[str]:
    listing = seaweed.client().list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return [o["Key"] for o in listing.get("Contents", [])]


def test_seaweedfs_honours_conditional_writes(seaweed: SeaweedServer) -> None:
    client = seaweed.client()
    first = client.put_object(Bucket=BUCKET, Key="cond/a", Body=b"1", IfNoneMatch="*")
    with pytest.raises(client.exceptions.ClientError, match="PreconditionFailed"):
        client.put_object(Bucket=BUCKET, Key="cond/a", Body=b"2", IfNoneMatch="*")
    client.put_object(Bucket=BUCKET, Key="cond/a", Body=b"3", IfMatch=first["ETag"])
    with pytest.raises(client.exceptions.ClientError, match="PreconditionFailed"):
        client.put_object(Bucket=BUCKET, Key="cond/a", Body=b"4", IfMatch=first["ETag"])
    assert client.get_object(Bucket=BUCKET, Key="cond/a")["Body"].read() == b"3"


def test_wrong_credentials(seaweed: SeaweedServer, tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    export = write_tiny_export(tmp_path / "e")
    bad = S3Store(
        BUCKET,
        "wrong-creds",
        endpoint_url=seaweed.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id=seaweed.access_key,
        aws_secret_access_key="not-the-secret",
    )
    with pytest.raises(StoreAuthError, match="refused our credentials") as info:
        publish(export, bad)
    assert "not-the-secret" not in str(info.value)
    # the same through the CLI, with credentials from the usual variables
    monkeypatch.setenv("ZOO_S3_ENDPOINT_URL", seaweed.endpoint_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", seaweed.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    code = main(["publish", str(export), "--store", f"s3://{BUCKET}/wrong-creds"])
    err = capsys.readouterr().err
    assert code == StoreAuthError.exit_code != 0
    assert "refused our credentials" in err and "not-the-secret" not in err
    assert _objects(seaweed, "wrong-creds") == []


def test_unreachable_endpoint(tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    export = write_tiny_export(tmp_path / "e")
    (closed,) = free_ports(1)  # nothing listens there any more
    monkeypatch.setenv("ZOO_S3_ENDPOINT_URL", f"http://127.0.0.1:{closed}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    code = main(["publish", str(export), "--store", "s3://zoo-bucket/models"])
    err = capsys.readouterr().err
    assert code == StoreUnreachableError.exit_code != 0
    assert f"127.0.0.1:{closed}" in err and "cannot reach" in err
