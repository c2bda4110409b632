"""The cold tier's object store: one small protocol over S3 (minio) and a local directory.

The tiering job writes Parquet objects through ``ObjectStore`` and the cold read path
reads them back; neither knows which kind of store it has. Both implementations keep
the same contract, held to it by one test suite (``tests/storage/test_objectstore.py``):

- Keys are ``/``-separated paths relative to the store's prefix. Every segment is
  non-empty, does not start with ``.`` and holds no ``\\``, NUL or control character, so
  a key can never leave the store's prefix (nor its directory, for the file store);
  ``ValueError`` otherwise. The file store keeps its temporary files under ``.`` names,
  which is why no key may use one.
- ``put_file`` replaces atomically: a reader sees the old object or the new one, whole.
- A missing object is ``None`` from ``stat``, ``FileNotFoundError`` from ``get`` and
  ``get_range``, and no error at all from ``delete``.
- Every other failure of the store (refused connection, timeout, an S3 error response,
  an I/O error in the directory) is ``StorageUnavailable``: retryable, and named by the
  store's url and the operation, never by its credentials.

The calls block; the caller runs them in a thread. minio's client is thread-safe, and so
is the file store.
"""

from __future__ import annotations

import builtins
import os
import secrets
import shutil
import stat as stat_mode
import time
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO, Final, NoReturn, Protocol, TypeVar
from urllib.parse import unquote, urlsplit

import urllib3
from minio import Minio
from minio.error import MinioException, S3Error

from storage.api import StorageDataError, StorageUnavailable

_T = TypeVar("_T")

# S3 refuses longer keys (its documented limit, in UTF-8 bytes), and so do we for both
# stores, so that a key valid in one is valid in the other.
MAX_KEY_BYTES: Final = 1024

# A stopped or wedged S3 server must fail a call within seconds, not minio's default of
# five minutes per read (then five retries): the tiering job retries with backoff, and a
# query that reads cold objects has a deadline. Reads are per socket read, not per
# transfer, so a large upload is not cut short while bytes keep flowing.
S3_CONNECT_TIMEOUT_SECONDS: Final = 2.0
S3_READ_TIMEOUT_SECONDS: Final = 5.0
S3_RETRIES: Final = 2

# Bytes percent-encoded in a Hive partition value: everything outside this set, so that a
# value can add neither a path segment nor an '='.
_HIVE_SAFE: Final = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_NO_SUCH_KEY: Final = frozenset({"NoSuchKey", "NoSuchObject"})


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """One stored object.

    ``etag`` is opaque: equal etags of one key in one store mean the same content. S3
    gives its ETag (an MD5 for a single-part upload, ``<md5>-<parts>`` for a multipart
    one). The file store gives ``<size>-<mtime_ns>`` in hex, a cheap stand-in: hashing
    the content would read a whole object on every ``stat``, and ``put_file`` stamps each
    new file with a fresh nanosecond mtime so that a replace always changes it.
    """

    key: str
    size: int
    etag: str


class ObjectStore(Protocol):
    """Objects under keys; see the module docstring for the contract both stores keep."""

    url: str
    """Where the store is (``s3://bucket/prefix``, ``file:///dir``), for logs; no secrets."""

    def put_file(self, key: str, path: Path) -> ObjectInfo:
        """Stores the content of the local file ``path`` under ``key``, replacing any
        object there atomically. ``FileNotFoundError`` when ``path`` does not exist."""
        ...

    def stat(self, key: str) -> ObjectInfo | None:
        """The object under ``key``, or None when there is none."""
        ...

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        """At most ``length`` bytes from ``offset`` (fewer where the object ends, none past
        its end). A negative ``offset`` asks for the last ``-offset`` bytes (a Parquet
        footer) and ignores ``length``. ``FileNotFoundError`` when absent."""
        ...

    def get(self, key: str) -> bytes:
        """The whole object; ``FileNotFoundError`` when absent."""
        ...

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix`` (a plain string prefix, as in S3:
        end it with ``/`` to mean a folder), at any depth, sorted by key."""
        ...

    def delete(self, key: str) -> None:
        """Removes the object under ``key``; an absent object is not an error."""
        ...


# ---- keys ------------------------------------------------------------------------------


def check_key_segment(value: str) -> None:
    """Raises ``ValueError`` unless ``value`` is a plain name that stays in its segment.

    Refused: the empty string, a leading ``.`` (so ``.``, ``..`` and hidden names), and
    any ``/``, ``\\``, ``=``, NUL or control character.
    """
    if not value:
        raise ValueError("a key segment must not be empty")
    if value.startswith("."):
        raise ValueError(f"key segment {value!r} must not start with '.'")
    for bad in ("/", "\\", "="):
        if bad in value:
            raise ValueError(f"key segment {value!r} must not contain {bad!r}")
    if _has_control(value):
        raise ValueError(f"key segment {value!r} must not contain a control character")


def hive_key(signal: str, project: str, hour_start_ns: int, name: str) -> str:
    """``{signal}/project={project}/date=YYYY-MM-DD/hour=HH/{name}``, the hour in UTC.

    Hive-style partition folders, so that DuckDB, Spark, Trino and Athena prune by project
    and date. The project is percent-encoded byte by byte (UTF-8, upper-case hex) outside
    ``[A-Za-z0-9._-]``: ingest already refuses project ids that could escape a segment, but
    a key is not the place to trust that, and the encoding is one-to-one, so two projects
    never share a folder. ``signal`` and ``name`` must pass ``check_key_segment``.
    """
    check_key_segment(signal)
    check_key_segment(name)
    if not project:
        raise ValueError("a project id must not be empty")
    hour = _EPOCH + timedelta(microseconds=hour_start_ns // 1000)
    escaped = _percent_encode(project)
    return f"{signal}/project={escaped}/date={hour:%Y-%m-%d}/hour={hour:%H}/{name}"


def _percent_encode(value: str) -> str:
    return "".join(
        chr(byte) if byte in _HIVE_SAFE else f"%{byte:02X}" for byte in value.encode("utf-8")
    )


def _has_control(value: str) -> bool:
    return any(unicodedata.category(c) == "Cc" for c in value)


def _check_key(key: str) -> None:
    """``ValueError`` unless ``key`` is a relative path of safe segments (module docstring).

    Unlike ``check_key_segment``, a segment may hold ``=``: Hive folders do.
    """
    if not isinstance(key, str) or not key:
        raise ValueError("an object key must be a non-empty string")
    for segment in key.split("/"):
        if not segment or segment.startswith(".") or "\\" in segment or _has_control(segment):
            raise ValueError(f"object key {key!r} has an unsafe segment {segment!r}")
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise ValueError(f"object key {key!r} is longer than {MAX_KEY_BYTES} bytes")


def _check_prefix(prefix: str) -> None:
    """A listing prefix is a key, or the start of one: '' or safe segments, maybe a '/'."""
    if prefix:
        _check_key(prefix.removesuffix("/"))


# ---- opening ---------------------------------------------------------------------------


def open_store(
    url: str,
    *,
    endpoint: str = "",
    access_key: str = "",
    secret_key: str = "",
    region: str = "",
    secure: bool = True,
    create_bucket: bool = True,
) -> ObjectStore:
    """The store that ``url`` names: ``s3://BUCKET[/PREFIX]`` or ``file:///ABS/DIR``.

    S3 needs ``endpoint`` (``host:port``) and, with ``create_bucket``, makes the bucket if
    it is missing, which asks the server now (``StorageUnavailable`` if it cannot be
    reached). The file store makes its directory. Another scheme, or a malformed url, is
    ``ValueError``.
    """
    parts = urlsplit(url)
    if parts.query or parts.fragment:
        raise ValueError(f"object store url {url!r} must have no query or fragment")
    if parts.scheme == "s3":
        if not parts.netloc:
            raise ValueError(f"object store url {url!r} names no bucket")
        if not endpoint:
            raise ValueError(f"object store url {url!r} needs an S3 endpoint (host:port)")
        prefix = parts.path.strip("/")
        if prefix:
            _check_key(prefix)
        return S3Store(
            parts.netloc,
            prefix,
            endpoint=endpoint,
            access_key=access_key,
            secret_key=secret_key,
            region=region,
            secure=secure,
            create_bucket=create_bucket,
        )
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ValueError(f"object store url {url!r} must name an absolute directory")
        path = unquote(parts.path)
        if not path.startswith("/"):
            raise ValueError(f"object store url {url!r} must name an absolute directory")
        return FileStore(Path(path))
    raise ValueError(
        f"object store url {url!r} has scheme {parts.scheme!r}: expected 's3' or 'file'"
    )


# ---- S3 --------------------------------------------------------------------------------


class S3Store:
    """Objects in one S3 bucket, under an optional key prefix, through minio.

    Multipart uploads are minio's business: ``fput_object`` splits large files itself.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str,
        *,
        endpoint: str,
        access_key: str,
        secret_key: str,
        region: str,
        secure: bool,
        create_bucket: bool,
    ) -> None:
        self.url = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
        self._where = f"{self.url} at {endpoint}"
        self._bucket = bucket
        self._prefix = f"{prefix}/" if prefix else ""
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(
                connect=S3_CONNECT_TIMEOUT_SECONDS, read=S3_READ_TIMEOUT_SECONDS
            ),
            maxsize=10,
            retries=urllib3.Retry(
                total=S3_RETRIES,
                backoff_factor=0.2,
                status_forcelist=(500, 502, 503, 504),
            ),
        )
        try:
            self._client = Minio(
                endpoint,
                access_key=access_key or None,
                secret_key=secret_key or None,
                secure=secure,
                region=region or None,
                http_client=http,
            )
        except ValueError as exc:  # a malformed endpoint, or a bucket name S3 refuses
            raise ValueError(f"object store {self._where}: {exc}") from None
        if create_bucket:
            self._call("create bucket", "", self._make_bucket)

    def _make_bucket(self) -> None:
        if self._client.bucket_exists(self._bucket):
            return
        try:
            self._client.make_bucket(self._bucket)
        except S3Error as exc:
            # Another replica made it between our check and our request.
            if exc.code != "BucketAlreadyOwnedByYou":
                raise

    def _call(self, operation: str, key: str, fn: Callable[[], _T]) -> _T:
        try:
            return fn()
        except (MinioException, urllib3.exceptions.HTTPError) as exc:
            self._unavailable(operation, key, exc)

    def _unavailable(self, operation: str, key: str, exc: Exception) -> NoReturn:
        # minio's and urllib3's messages name the host, bucket and key, never credentials
        # (they travel in the signed Authorization header).
        what = f"{operation} {key!r}" if key else operation
        raise StorageUnavailable(
            f"object store {self._where}: {what} failed: {type(exc).__name__}: {exc}"
        ) from exc

    def _missing(self, key: str) -> FileNotFoundError:
        return FileNotFoundError(f"object store {self.url}: no object {key!r}")

    def put_file(self, key: str, path: Path) -> ObjectInfo:
        _check_key(key)
        size = os.stat(path).st_size  # FileNotFoundError for a missing source, as documented
        result = self._call(
            "put",
            key,
            lambda: self._client.fput_object(self._bucket, self._prefix + key, str(path)),
        )
        return ObjectInfo(key, size, (result.etag or "").strip('"'))

    def stat(self, key: str) -> ObjectInfo | None:
        _check_key(key)
        try:
            found = self._client.stat_object(self._bucket, self._prefix + key)
        except S3Error as exc:
            # A HEAD answer has no body: minio calls every 404 NoSuchKey, a missing bucket
            # too. That reads as "absent", and the put that follows fails as unavailable.
            if exc.code in _NO_SUCH_KEY:
                return None
            self._unavailable("stat", key, exc)
        except (MinioException, urllib3.exceptions.HTTPError) as exc:
            self._unavailable("stat", key, exc)
        return ObjectInfo(key, found.size or 0, (found.etag or "").strip('"'))

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        _check_key(key)
        if offset < 0:
            # A suffix range, which minio's offset/length cannot express.
            return self._read(key, "get range", f"bytes={offset}")
        if length < 0:
            raise ValueError(f"a range length must be >= 0, got {length}")
        if length == 0:
            if self.stat(key) is None:
                raise self._missing(key)
            return b""
        return self._read(key, "get range", f"bytes={offset}-{offset + length - 1}")

    def get(self, key: str) -> bytes:
        _check_key(key)
        return self._read(key, "get", None)

    def _read(self, key: str, operation: str, byte_range: str | None) -> bytes:
        """The object's bytes, or those of ``byte_range`` (an HTTP Range value)."""
        response = None
        try:
            response = self._client.get_object(
                self._bucket,
                self._prefix + key,
                request_headers={"Range": byte_range} if byte_range else None,
            )
            return bytes(response.read())
        except S3Error as exc:
            if exc.code in _NO_SUCH_KEY:
                raise self._missing(key) from None
            if exc.code == "InvalidRange":  # the range starts past the end of the object
                return b""
            self._unavailable(operation, key, exc)
        except (MinioException, urllib3.exceptions.HTTPError) as exc:
            self._unavailable(operation, key, exc)
        finally:
            if response is not None:
                response.close()
                response.release_conn()

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        _check_prefix(prefix)
        # S3 lists in UTF-8 byte order, which is code point order: Python's str order.
        objects = self._client.list_objects(
            self._bucket, prefix=self._prefix + prefix, recursive=True
        )
        cut = len(self._prefix)
        try:
            for found in objects:
                if found.is_dir or found.object_name is None:
                    continue
                yield ObjectInfo(
                    found.object_name[cut:], found.size or 0, (found.etag or "").strip('"')
                )
        except (MinioException, urllib3.exceptions.HTTPError) as exc:
            self._unavailable("list", prefix, exc)

    def delete(self, key: str) -> None:
        _check_key(key)
        try:
            self._client.remove_object(self._bucket, self._prefix + key)
        except S3Error as exc:
            if exc.code not in _NO_SUCH_KEY:
                self._unavailable("delete", key, exc)
        except (MinioException, urllib3.exceptions.HTTPError) as exc:
            self._unavailable("delete", key, exc)


# ---- a local directory -----------------------------------------------------------------


class FileStore:
    """Objects as files under one directory, a key's segments as its subdirectories.

    The embedded default: no S3 server needed. ``put_file`` writes a hidden temporary file
    in the target's directory, fsyncs it, renames it over the target and fsyncs the
    directory, so that a crash leaves the old object or the new one, and a later reader
    of the manifest finds what it names. ``delete`` removes the folders it leaves empty,
    as S3 has no empty folders either.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = root.as_uri()
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self._unavailable("create directory", "", exc)

    def _unavailable(self, operation: str, key: str, exc: OSError) -> NoReturn:
        what = f"{operation} {key!r}" if key else operation
        raise StorageUnavailable(f"object store {self.url}: {what} failed: {exc}") from exc

    def _missing(self, key: str) -> FileNotFoundError:
        return FileNotFoundError(f"object store {self.url}: no object {key!r}")

    def _info(self, key: str, st: os.stat_result) -> ObjectInfo:
        return ObjectInfo(key, st.st_size, f"{st.st_size:x}-{st.st_mtime_ns:x}")

    def put_file(self, key: str, path: Path) -> ObjectInfo:
        _check_key(key)
        target = self.root / key
        with open(path, "rb") as source:  # FileNotFoundError for a missing source
            for attempt in range(3):
                try:
                    self._make_parents(target.parent)
                    return self._replace(key, source, target)
                except FileNotFoundError as exc:
                    # A concurrent delete removed a folder we had just made; make it again.
                    if attempt == 2:
                        self._unavailable("put", key, exc)
                    source.seek(0)
                except (IsADirectoryError, NotADirectoryError) as exc:
                    # S3 can hold both "a/b" and "a/b/c"; a directory cannot.
                    raise StorageDataError(
                        f"object store {self.url}: key {key!r} collides with a folder "
                        "or an object on its path"
                    ) from exc
                except OSError as exc:
                    self._unavailable("put", key, exc)
        raise AssertionError("unreachable")

    def _make_parents(self, folder: Path) -> None:
        """Makes ``folder`` and its missing parents, fsyncing each parent's entry."""
        if folder.is_dir():
            return
        if folder != self.root:
            self._make_parents(folder.parent)
        try:
            folder.mkdir()
        except FileExistsError:
            if not folder.is_dir():
                raise NotADirectoryError(str(folder)) from None
            return
        _fsync_dir(folder.parent)

    def _replace(self, key: str, source: BinaryIO, target: Path) -> ObjectInfo:
        temporary = target.with_name(f".{target.name}.{secrets.token_hex(8)}.tmp")
        try:
            with open(temporary, "xb") as out:
                shutil.copyfileobj(source, out, 1 << 20)
                out.flush()
                # A fresh mtime per put: the etag changes on every replace (ObjectInfo).
                now = time.time_ns()
                os.utime(out.fileno(), ns=(now, now))
                os.fsync(out.fileno())
                st = os.fstat(out.fileno())
            os.replace(temporary, target)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        _fsync_dir(target.parent)
        return self._info(key, st)

    def stat(self, key: str) -> ObjectInfo | None:
        _check_key(key)
        try:
            st = os.stat(self.root / key)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            self._unavailable("stat", key, exc)
        if not stat_mode.S_ISREG(st.st_mode):
            return None
        return self._info(key, st)

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        _check_key(key)
        if offset >= 0 and length < 0:
            raise ValueError(f"a range length must be >= 0, got {length}")
        return self._read(key, "get range", offset, length)

    def get(self, key: str) -> bytes:
        _check_key(key)
        return self._read(key, "get", 0, -1)

    def _read(self, key: str, operation: str, offset: int, length: int) -> bytes:
        try:
            with open(self.root / key, "rb") as f:
                if offset < 0:
                    size = os.fstat(f.fileno()).st_size
                    f.seek(max(0, size + offset))
                    return f.read()
                f.seek(offset)
                return f.read(length)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise self._missing(key) from None
        except OSError as exc:
            self._unavailable(operation, key, exc)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        _check_prefix(prefix)
        folder = prefix.rpartition("/")[0]
        start = self.root / folder if folder else self.root
        found: builtins.list[ObjectInfo] = []
        try:
            self._walk(start, folder, prefix, found)
        except OSError as exc:
            self._unavailable("list", prefix, exc)
        found.sort(key=lambda info: info.key)
        yield from found

    def _walk(self, folder: Path, key: str, prefix: str, found: builtins.list[ObjectInfo]) -> None:
        try:
            entries = builtins.list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError):
            return  # nothing there (or it vanished under a concurrent delete)
        for entry in entries:
            if entry.name.startswith("."):  # temporary files of put_file
                continue
            child = f"{key}/{entry.name}" if key else entry.name
            if entry.is_dir(follow_symlinks=False):
                # Skip folders that cannot hold a match (prefix "a/b" skips "a/c").
                if child.startswith(prefix) or prefix.startswith(child + "/"):
                    self._walk(Path(entry.path), child, prefix, found)
            elif entry.is_file(follow_symlinks=False) and child.startswith(prefix):
                try:
                    found.append(self._info(child, entry.stat(follow_symlinks=False)))
                except FileNotFoundError:
                    continue  # deleted since the scan

    def delete(self, key: str) -> None:
        _check_key(key)
        target = self.root / key
        try:
            target.unlink()
            _fsync_dir(target.parent)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return
        except OSError as exc:
            self._unavailable("delete", key, exc)
        folder = target.parent
        while folder != self.root:
            try:
                folder.rmdir()
            except OSError:  # not empty (or already gone): the folders above are in use
                return
            folder = folder.parent


def _fsync_dir(folder: Path) -> None:
    """Makes a rename or a new entry in ``folder`` durable (POSIX: fsync the directory)."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
