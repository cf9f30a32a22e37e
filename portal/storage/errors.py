"""What storage raises: a missing object, or one that does not open."""

from __future__ import annotations


class StorageError(Exception):
    """Object storage refused or failed an operation."""


class ObjectNotFound(StorageError, KeyError):
    """No object is stored under the key."""

    def __str__(self) -> str:
        return f"no stored object {self.args[0]!r}" if self.args else "no stored object"


class ObjectCorrupted(StorageError):
    """The object fails authentication: changed, truncated, reordered, stored under another
    key, or wrapped by a master key with this id that is not the one configured."""


class UnknownMasterKey(StorageError):
    """The object was wrapped by a master key that is neither the current key nor an old one."""
