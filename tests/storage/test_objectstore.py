"""storage.objectstore: one behaviour, two stores (an S3 server on loopback, a directory),
and the keys that the cold tier builds."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from minio import Minio

from storage.api import StorageUnavailable
from storage.objectstore import (
    FileStore,
    ObjectStore,
    check_key_segment,
    hive_key,
    open_store,
)
from tests.conftest import start_moto

ACCESS_KEY = "testing"
SECRET_KEY = "s3cr3t-never-logged"  # moto accepts any credentials


def _client(endpoint: str) -> Minio:
    return Minio(
        endpoint, access_key=ACCESS_KEY, secret_key=SECRET_KEY, secure=False, region="us-east-1"
    )


def _bucket() -> str:
    return f"cold-{secrets.token_hex(4)}"


def _open_s3(endpoint: str, url: str, **overrides: object) -> ObjectStore:
    kwargs: dict[str, object] = {
        "endpoint": endpoint,
        "access_key": ACCESS_KEY,
        "secret_key": SECRET_KEY,
        "region": "us-east-1",
        "secure": False,
    }
    kwargs.update(overrides)
    return open_store(url, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(params=["file", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "file":
        return open_store((tmp_path / "cold").as_uri())
    endpoint = request.getfixturevalue("s3_endpoint")
    return _open_s3(endpoint, f"s3://{_bucket()}/otlpd/cold")


def _file(tmp_path: Path, content: bytes) -> Path:
    path = tmp_path / f"upload-{secrets.token_hex(4)}"
    path.write_bytes(content)
    return path


# ---- the shared behaviour --------------------------------------------------------------


def test_put_stat_get_and_ranges(store: ObjectStore, tmp_path: Path) -> None:
    content = bytes(range(256)) * 4
    info = store.put_file("spans/a/obj.parquet", _file(tmp_path, content))
    assert (info.key, info.size) == ("spans/a/obj.parquet", len(content))
    assert info.etag and '"' not in info.etag
    assert store.stat("spans/a/obj.parquet") == info

    assert store.get("spans/a/obj.parquet") == content
    assert store.get_range("spans/a/obj.parquet", 10, 5) == content[10:15]
    assert store.get_range("spans/a/obj.parquet", 1000, 100) == content[1000:]  # short at end
    assert store.get_range("spans/a/obj.parquet", 5000, 10) == b""  # past the end
    assert store.get_range("spans/a/obj.parquet", 3, 0) == b""
    # A negative offset: the last bytes, as for a Parquet footer; length is ignored.
    assert store.get_range("spans/a/obj.parquet", -8, 0) == content[-8:]
    assert store.get_range("spans/a/obj.parquet", -8, 2) == content[-8:]
    assert store.get_range("spans/a/obj.parquet", -5000, 0) == content  # longer than it

    # Absent objects.
    assert store.stat("spans/a/other") is None
    assert store.stat("spans/a") is None  # a "folder" is no object
    with pytest.raises(FileNotFoundError):
        store.get("spans/a/other")
    with pytest.raises(FileNotFoundError):
        store.get_range("spans/a/other", 0, 10)
    with pytest.raises(FileNotFoundError):
        store.get_range("spans/a/other", -8, 0)
    with pytest.raises(FileNotFoundError):
        store.get_range("spans/a/other", 0, 0)
    with pytest.raises(FileNotFoundError):  # the source file, not the object
        store.put_file("spans/a/x", tmp_path / "no-such-file")


def test_replace_delete_and_empty_objects(store: ObjectStore, tmp_path: Path) -> None:
    first = store.put_file("logs/k", _file(tmp_path, b"version one"))
    second = store.put_file("logs/k", _file(tmp_path, b"version two"))  # same size
    assert first.size == second.size and first.etag != second.etag
    assert store.get("logs/k") == b"version two"
    assert store.stat("logs/k") == second

    empty = store.put_file("logs/empty", _file(tmp_path, b""))
    assert empty.size == 0 and store.get("logs/empty") == b""
    assert store.get_range("logs/empty", -8, 0) == b""

    store.delete("logs/k")
    assert store.stat("logs/k") is None
    store.delete("logs/k")  # absent: no error
    store.delete("never/there")
    assert [info.key for info in store.list("")] == ["logs/empty"]


def test_list_is_recursive_sorted_and_bounded_by_prefix(store: ObjectStore, tmp_path: Path) -> None:
    keys = ["x/b/2", "x/a/10", "x/a/1", "xy/1", "y/1", "x/a/é", "x/a/Z"]
    for key in keys:
        store.put_file(key, _file(tmp_path, key.encode()))
    listed = list(store.list("x/"))
    assert [info.key for info in listed] == ["x/a/1", "x/a/10", "x/a/Z", "x/a/é", "x/b/2"]
    assert all(info == store.stat(info.key) for info in listed)
    assert [info.key for info in store.list("")] == sorted(keys)
    assert [info.key for info in store.list("x")] == sorted(k for k in keys if k.startswith("x"))
    assert [info.key for info in store.list("x/a/1")] == ["x/a/1", "x/a/10"]  # a string prefix
    assert list(store.list("z/")) == []


def test_hive_keys_of_hostile_projects_round_trip(store: ObjectStore, tmp_path: Path) -> None:
    hour = int(datetime(2024, 3, 5, 7, tzinfo=UTC).timestamp()) * 10**9
    projects = ["../x", "a/b", "p=q", "é", "%41", "A", ".."]
    for project in projects:
        store.put_file(hive_key("spans", project, hour, "p-0.parquet"), _file(tmp_path, b"x"))
    listed = [info.key for info in store.list("spans/")]
    assert len(listed) == len(projects)  # no two projects share a key
    for key in listed:
        segments = key.split("/")
        assert len(segments) == 5 and segments[0] == "spans"
        assert segments[1].startswith("project=") and segments[1].count("=") == 1
        assert segments[2:] == ["date=2024-03-05", "hour=07", "p-0.parquet"]


def test_unsafe_keys_are_refused(store: ObjectStore, tmp_path: Path) -> None:
    path = _file(tmp_path, b"x")
    unsafe = ["", "/abs", "a//b", "a/", "../escape", "a/../b", "a/./b", ".hidden", "a\\b", "a\0b"]
    for key in unsafe:
        with pytest.raises(ValueError):
            store.put_file(key, path)
        with pytest.raises(ValueError):
            store.stat(key)
    with pytest.raises(ValueError):
        store.put_file("k" * 1025, path)
    with pytest.raises(ValueError):
        list(store.list("../"))


# ---- each store ------------------------------------------------------------------------


def test_s3_keys_live_under_the_url_prefix(s3_endpoint: str, tmp_path: Path) -> None:
    bucket = _bucket()
    store = _open_s3(s3_endpoint, f"s3://{bucket}/team/cold/")  # slashes are not kept
    assert store.url == f"s3://{bucket}/team/cold"
    store.put_file("spans/k.parquet", _file(tmp_path, b"data"))
    client = _client(s3_endpoint)
    names = [o.object_name for o in client.list_objects(bucket, recursive=True)]
    assert names == ["team/cold/spans/k.parquet"]
    # Another prefix in the same bucket does not see it.
    other = _open_s3(s3_endpoint, f"s3://{bucket}/team/cold2")
    assert list(other.list("")) == [] and other.stat("spans/k.parquet") is None
    # Without a prefix, keys are the bucket's.
    whole = _open_s3(s3_endpoint, f"s3://{bucket}")
    assert [info.key for info in whole.list("")] == ["team/cold/spans/k.parquet"]


def test_s3_bucket_is_created_when_missing(s3_endpoint: str, tmp_path: Path) -> None:
    client = _client(s3_endpoint)
    bucket = _bucket()
    lazy = _open_s3(s3_endpoint, f"s3://{bucket}/p", create_bucket=False)
    assert not client.bucket_exists(bucket)
    with pytest.raises(StorageUnavailable) as refused:
        lazy.put_file("k", _file(tmp_path, b"x"))
    assert f"s3://{bucket}/p" in str(refused.value) and "put" in str(refused.value)

    _open_s3(s3_endpoint, f"s3://{bucket}/p")
    assert client.bucket_exists(bucket)
    _open_s3(s3_endpoint, f"s3://{bucket}/p")  # already there: fine
    lazy.put_file("k", _file(tmp_path, b"x"))


def test_a_stopped_s3_server_is_unavailable_within_seconds(tmp_path: Path) -> None:
    server, endpoint = start_moto()
    store = _open_s3(endpoint, f"s3://{_bucket()}/p")
    store.put_file("k", _file(tmp_path, b"x"))
    server.stop()
    path = _file(tmp_path, b"y" * 1000)
    calls: list[tuple[str, Callable[[], object]]] = [
        ("put", lambda: store.put_file("k", path)),
        ("stat", lambda: store.stat("k")),
        ("get", lambda: store.get("k")),
        ("list", lambda: list(store.list(""))),
        ("delete", lambda: store.delete("k")),
    ]
    for operation, call in calls:
        started = time.monotonic()
        with pytest.raises(StorageUnavailable) as failed:
            call()
        assert time.monotonic() - started < 5, operation
        message = str(failed.value)
        assert store.url in message and operation in message
        assert SECRET_KEY not in message
    with pytest.raises(StorageUnavailable):
        _open_s3(endpoint, f"s3://{_bucket()}")  # making the bucket needs the server


def test_file_store_leaves_no_temporary_files_nor_empty_folders(tmp_path: Path) -> None:
    root = tmp_path / "made" / "here"
    store = open_store(root.as_uri())
    assert isinstance(store, FileStore) and root.is_dir()
    assert store.url == root.as_uri()
    store.put_file("a/b/c/k", _file(tmp_path, b"one"))
    store.put_file("a/b/c/k", _file(tmp_path, b"two"))
    store.put_file("a/other", _file(tmp_path, b"x"))
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    assert files == ["a", "a/b", "a/b/c", "a/b/c/k", "a/other"]
    store.delete("a/b/c/k")
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*")) == ["a", "a/other"]
    # A stray temporary file (a crash mid-put) is never listed as an object.
    (root / "a" / ".k.0123.tmp").write_bytes(b"partial")
    assert [info.key for info in store.list("")] == ["a/other"]


def test_open_store_refuses_what_it_cannot_open() -> None:
    with pytest.raises(ValueError, match="'http'"):
        open_store("http://example.com/bucket")
    with pytest.raises(ValueError, match="''"):
        open_store("/just/a/path")
    with pytest.raises(ValueError, match="endpoint"):
        open_store("s3://bucket/prefix")
    with pytest.raises(ValueError, match="bucket"):
        open_store("s3:///prefix", endpoint="127.0.0.1:9")
    with pytest.raises(ValueError):
        open_store("s3://bucket/a/../b", endpoint="127.0.0.1:9", create_bucket=False)
    with pytest.raises(ValueError, match="absolute"):
        open_store("file://relative/dir")


# ---- keys ------------------------------------------------------------------------------


def test_hive_key_format() -> None:
    hour = int(datetime(2024, 3, 5, 7, tzinfo=UTC).timestamp()) * 10**9
    assert hive_key("spans", "acme", hour, "spans_p20240305t0700-0.parquet") == (
        "spans/project=acme/date=2024-03-05/hour=07/spans_p20240305t0700-0.parquet"
    )
    # The hour that holds the instant, in UTC.
    assert hive_key("logs", "a", hour + 59 * 60 * 10**9 + 1, "n") == (
        "logs/project=a/date=2024-03-05/hour=07/n"
    )
    assert hive_key("logs", "a", 0, "n") == "logs/project=a/date=1970-01-01/hour=00/n"


@pytest.mark.parametrize(
    ("project", "escaped"),
    [
        ("../x", "..%2Fx"),
        ("a/b", "a%2Fb"),
        ("p=q", "p%3Dq"),
        ("é", "%C3%A9"),
        ("%41", "%2541"),  # '%' itself is escaped: the encoding is one-to-one
        ("a\\b", "a%5Cb"),
        ("a b~", "a%20b%7E"),
        ("a\x00\n", "a%00%0A"),
        ("Ok_1.2-3", "Ok_1.2-3"),
    ],
)
def test_hive_key_escapes_projects(project: str, escaped: str) -> None:
    key = hive_key("metrics", project, 0, "n.parquet")
    segments = key.split("/")
    assert len(segments) == 5
    assert segments[1] == f"project={escaped}"
    assert "=" not in escaped and "/" not in escaped


def test_hive_key_refuses_empty_projects_and_unsafe_names() -> None:
    with pytest.raises(ValueError):
        hive_key("spans", "", 0, "n")
    for name in ["", "a/b", "..", "x=y"]:
        with pytest.raises(ValueError):
            hive_key("spans", "p", 0, name)
    with pytest.raises(ValueError):
        hive_key("spans/extra", "p", 0, "n")


@pytest.mark.parametrize(
    "segment", ["", ".", "..", ".hidden", "a/b", "a\\b", "a=b", "a\x00b", "a\nb", "\x7f", "\x85"]
)
def test_check_key_segment_refuses(segment: str) -> None:
    with pytest.raises(ValueError):
        check_key_segment(segment)


@pytest.mark.parametrize("segment", ["p-0.parquet", "spans", "é", "a..b", "a.b"])
def test_check_key_segment_accepts(segment: str) -> None:
    check_key_segment(segment)
