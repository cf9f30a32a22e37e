"""Objects as files under a folder (the instance folder's `storage/` by default).

A write goes to a temporary file in `<root>/.partial/` (same file system, so the rename is
atomic), is flushed to disk, then renamed to its key's path: a reader sees the old object or
the whole new one, never a part. Keys never start a segment with "." (portal/storage), so no
key reaches `.partial/`.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from portal.storage.errors import ObjectNotFound

PARTIAL = ".partial"


class LocalBackend:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"LocalBackend({str(self.root)!r})"

    def open_upload(self, key: str) -> LocalUpload:
        partial = self.root / PARTIAL
        partial.mkdir(parents=True, exist_ok=True)
        return LocalUpload(partial, self._path(key))

    def open_download(self, key: str) -> BinaryIO:
        try:
            return self._path(key).open("rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound(key) from None

    def read_head(self, key: str, length: int) -> tuple[bytes, int]:
        """The object's first `length` bytes and its stored size."""
        with self.open_download(key) as stream:
            return stream.read(length), os.fstat(stream.fileno()).st_size

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            pass

    def keys(self, prefix: str) -> Iterator[str]:
        start = self.root / prefix.rpartition("/")[0]
        found = []
        for folder, dirs, files in os.walk(start):
            dirs[:] = [name for name in dirs if not name.startswith(".")]
            for name in files:
                key = (Path(folder) / name).relative_to(self.root).as_posix()
                if key.startswith(prefix) and not name.startswith("."):
                    found.append(key)
        return iter(sorted(found))

    def remove_abandoned_writes(self, older_than_seconds: float) -> int:
        """Delete temporary files left by writers that died before finishing; how many."""
        partial = self.root / PARTIAL
        if not partial.is_dir():
            return 0
        cutoff = time.time() - older_than_seconds
        removed = 0
        for entry in os.scandir(partial):
            if entry.is_file() and entry.stat().st_mtime < cutoff:
                Path(entry.path).unlink(missing_ok=True)
                removed += 1
        return removed

    def _path(self, key: str) -> Path:
        return self.root / key


class LocalUpload:
    def __init__(self, partial: Path, final: Path) -> None:
        fd, name = tempfile.mkstemp(dir=partial, suffix=".part")  # mode 0600
        self._file = os.fdopen(fd, "wb")
        self._temporary = Path(name)
        self._final = final

    def write(self, data: bytes) -> None:
        self._file.write(data)

    def commit(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self._temporary, self._final)
        # The rename itself survives a crash only once the folder is on disk too.
        folder = os.open(self._final.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)

    def abort(self) -> None:
        self._file.close()
        self._temporary.unlink(missing_ok=True)
