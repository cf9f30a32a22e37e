"""Object storage for exports and other files: local disk or S3, encrypted at rest.

    storage = open_storage(settings)       # or current(), set up by configure_services
    with storage.writer("tenants/acme/exports/7.zip") as out:
        out.write(chunk)                    # file-like: zipfile can write into it
    with storage.reader(key) as chunks:     # or a plain `for chunk in storage.reader(key)`
        for chunk in chunks: ...

Invariants:
- Every object is AES-256-GCM encrypted under its own data key, wrapped by the master key
  (portal/storage/envelope.py); what the disk or the bucket holds never contains plaintext.
- Both ways stream in segments of 64 KiB: memory holds a segment (plus one S3 part when
  writing to S3), never a whole object.
- A write is all or nothing: the object appears under its key only when the writer closes
  without an error; an error inside the `with` block, or `abort()`, leaves nothing behind
  (local.py and s3.py say how). A reader fails loudly (`ObjectCorrupted`) on any change,
  reordering or truncation, having yielded only authenticated chunks before it.
- Keys are relative paths of [A-Za-z0-9._-] segments, none starting with "."; anything else
  is a ValueError before any I/O.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

from portal.config import Settings
from portal.storage import envelope
from portal.storage.errors import ObjectCorrupted

_KEY = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*(/[A-Za-z0-9_-][A-Za-z0-9._-]*)*")
MAX_KEY_LENGTH = 512
DEVELOPMENT_KEY_FILE = "storage-master-key"


class Upload(Protocol):
    def write(self, data: bytes) -> None: ...
    def commit(self) -> None: ...
    def abort(self) -> None: ...


class Backend(Protocol):
    """Where the encrypted bytes go: `local.LocalBackend` or `s3.S3Backend`."""

    def open_upload(self, key: str) -> Upload: ...
    def open_download(self, key: str) -> BinaryIO: ...
    def read_head(self, key: str, length: int) -> tuple[bytes, int]: ...
    def exists(self, key: str) -> bool: ...
    def delete(self, key: str) -> None: ...
    def keys(self, prefix: str) -> Iterator[str]: ...
    def remove_abandoned_writes(self, older_than_seconds: float) -> int: ...


def validate_key(key: str) -> str:
    """The key itself if it is a valid object key; ValueError otherwise."""
    if (
        not isinstance(key, str)
        or len(key) > MAX_KEY_LENGTH
        or not _KEY.fullmatch(key)
        or any(part.startswith(".") for part in key.split("/"))
    ):
        raise ValueError(f"not a valid storage key: {key!r}")
    return key


class Storage:
    def __init__(self, backend: Backend, keys: envelope.MasterKeys) -> None:
        self.backend = backend
        self._keys = keys

    def __repr__(self) -> str:
        return f"Storage({self.backend!r})"

    def writer(self, key: str) -> ObjectWriter:
        """A writer for a new object under `key` (replacing any there once it completes)."""
        sealer = envelope.Sealer(self._keys, validate_key(key))
        upload = self.backend.open_upload(key)
        try:
            upload.write(sealer.header)
        except BaseException:
            upload.abort()
            raise
        return ObjectWriter(sealer, upload)

    def reader(self, key: str) -> ObjectReader:
        """The object's plaintext as an iterable of chunks. Opening checks the header (a missing
        object, an unknown master key or a changed header raise here); each chunk is checked
        before it is yielded."""
        stream = self.backend.open_download(validate_key(key))
        try:
            opener = envelope.open_header(
                _read_exactly(stream, envelope.HEADER_SIZE), self._keys, key
            )
        except BaseException:
            stream.close()
            raise
        return ObjectReader(stream, opener)

    def exists(self, key: str) -> bool:
        return self.backend.exists(validate_key(key))

    def delete(self, key: str) -> None:
        """Remove the object; nothing happens when there is none."""
        self.backend.delete(validate_key(key))

    def size(self, key: str) -> int:
        """The object's plaintext size, computed from its stored size and the segment size in its
        header (one stat or one ranged GET, no decryption): trust it only after reading."""
        head, stored = self.backend.read_head(validate_key(key), envelope.HEADER_SIZE)
        return envelope.plaintext_size(stored, envelope.segment_size_of(head))

    def list(self, prefix: str = "") -> Iterator[str]:
        """Keys of the stored objects starting with `prefix`, in key order."""
        if prefix:
            validate_key(prefix.rstrip("/"))
        return self.backend.keys(prefix)

    def remove_abandoned_writes(self, older_than_seconds: float = 24 * 3600) -> int:
        """Clean up after writers that died mid-object (a killed worker); how many were left."""
        return self.backend.remove_abandoned_writes(older_than_seconds)


class ObjectWriter:
    """A write-only binary file for one object: `write`, then `close` to store it, or `abort`.

    As a context manager it closes on success and aborts on an exception. It offers `tell` but
    no `seek`, which zipfile accepts (it then writes data descriptors)."""

    def __init__(self, sealer: envelope.Sealer, upload: Upload) -> None:
        self._sealer = sealer
        self._upload = upload
        self._pending = bytearray()
        self._written = 0
        self.closed = False

    def write(self, data: bytes) -> int:
        if self.closed:
            raise ValueError("write to a closed object writer")
        size = self._sealer.segment_size
        self._pending += data
        # A full segment is sealed only once more data follows: the last one must be flagged.
        while len(self._pending) > size:
            self._send(self._sealer.seal(self._pending[:size], last=False))
            del self._pending[:size]
        self._written += len(data)
        return len(data)

    def close(self) -> None:
        """Seal the last segment and store the object under its key."""
        if self.closed:
            return
        try:
            self._send(self._sealer.seal(bytes(self._pending), last=True))
            self._upload.commit()
        except BaseException:
            self.abort()
            raise
        self._pending = bytearray()
        self.closed = True

    def abort(self) -> None:
        """Drop everything written: nothing is stored under the key."""
        if self.closed:
            return
        self.closed = True
        self._pending = bytearray()
        self._upload.abort()

    def tell(self) -> int:
        return self._written

    def flush(self) -> None:
        """Nothing to do: segments leave as soon as they are sealed."""

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def __enter__(self) -> ObjectWriter:
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _send(self, sealed: bytes) -> None:
        try:
            self._upload.write(sealed)
        except BaseException:
            self.abort()
            raise


class ObjectReader:
    """The plaintext of one object, chunk by chunk; iterate once. `close` releases the stream
    early (WSGI servers call it when a download ends)."""

    def __init__(self, stream: BinaryIO, opener: envelope.Opener) -> None:
        self._stream = stream
        self._opener = opener
        self._started = False

    def __iter__(self) -> Iterator[bytes]:
        if self._started:
            raise RuntimeError("an object reader is iterated once")
        self._started = True
        return self._chunks()

    def _chunks(self) -> Iterator[bytes]:
        sealed_size = self._opener.segment_size + envelope.TAG_SIZE
        try:
            current = _read_exactly(self._stream, sealed_size)
            if not current:
                raise ObjectCorrupted("the object ends after its header")
            # Read one segment ahead: the segment with nothing after it must be the last one.
            while True:
                following = _read_exactly(self._stream, sealed_size)
                yield self._opener.open(current, last=not following)
                if not following:
                    return
                current = following
        finally:
            self.close()

    def close(self) -> None:
        self._stream.close()

    def __enter__(self) -> ObjectReader:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def open_storage(settings: Settings) -> Storage:
    """The storage the settings describe: S3 when S3_BUCKET is set, else the local folder."""
    if settings.s3_bucket:
        from portal.storage.s3 import S3Backend

        backend: Backend = S3Backend(
            settings.s3_bucket,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            access_key_id=settings.s3_access_key_id,
            secret_access_key=settings.s3_secret_access_key,
        )
    else:
        from portal.storage.local import LocalBackend

        backend = LocalBackend(settings.storage_path)
    master = settings.storage_master_key or development_master_key(settings.instance_path)
    return Storage(backend, envelope.MasterKeys(master, settings.storage_old_master_keys))


def development_master_key(instance_path: Path) -> bytes:
    """The instance folder's own master key, generated on first use (development only:
    production refuses to start without STORAGE_MASTER_KEY). Losing the file loses every
    object stored under it."""
    path = Path(instance_path) / DEVELOPMENT_KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(base64.b64encode(os.urandom(32)).decode("ascii") + "\n")
        try:
            os.link(temporary, path)  # fails if another process made one first: keep theirs
        except FileExistsError:
            pass
        finally:
            temporary.unlink()
    key = base64.b64decode(path.read_text().strip(), validate=True)
    if len(key) != 32:
        raise ValueError(f"{path} does not hold a 32-byte key in base64")
    return key


_current: Storage | None = None


def configure(settings: Settings) -> Storage:
    """Open the process's storage (at start-up, portal/startup.py)."""
    global _current
    _current = open_storage(settings)
    return _current


def current() -> Storage:
    if _current is None:
        raise RuntimeError("portal.storage is not configured; call configure_services()")
    return _current


def _read_exactly(stream: BinaryIO, size: int) -> bytes:
    """`size` bytes, fewer only at the end of the stream (a network read may return fewer)."""
    data = stream.read(size)
    if len(data) == size or not data:
        return data
    parts = [data]
    got = len(data)
    while got < size:
        more = stream.read(size - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)
