"""The encrypted object format: a header, then AES-256-GCM segments (the STREAM construction).

    header   magic "PSO" | version 1 | segment size (uint32) | master key id (8) |
             nonce prefix (7) | wrap nonce (12) | data key wrapped with AES-256-GCM (32 + 16)
    segments each `segment size` bytes of plaintext + a 16-byte tag; the last one shorter
             (0 to `segment size` bytes), so an empty object is one empty last segment

Every object has its own random data key. The master key wraps it with AES-GCM whose associated
data is the header before the wrap nonce plus the object's storage key, so changing any header
field or moving the object to another key makes it unopenable. Segment i is sealed under the
nonce prefix | i (uint32) | 1 if it is the last segment else 0: a reordered segment fails (wrong
counter), and a stream cut at a segment boundary fails (its new end was not sealed as last).
The master key id is a fingerprint of the key, so rotating needs no id of its own: set the new
STORAGE_MASTER_KEY and move the old one to STORAGE_OLD_MASTER_KEYS.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Iterable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from portal.storage.errors import ObjectCorrupted, UnknownMasterKey

MAGIC = b"PSO"
VERSION = 1
SEGMENT_SIZE = 64 * 1024
TAG_SIZE = 16
KEY_ID_SIZE = 8
_NONCE_PREFIX_SIZE = 7
_WRAP_NONCE_SIZE = 12
_FIXED = struct.Struct(f">3sBI{KEY_ID_SIZE}s{_NONCE_PREFIX_SIZE}s")
HEADER_SIZE = _FIXED.size + _WRAP_NONCE_SIZE + 32 + TAG_SIZE
_MAX_SEGMENTS = 2**32
# A header names its segment size; one outside these bounds is refused before anything is read.
_SEGMENT_SIZES = range(1024, 16 * 1024 * 1024 + 1)


def key_id(master_key: bytes) -> bytes:
    """The id an object's header records for the master key that wrapped its data key."""
    return hashlib.sha256(b"portal storage master key\x00" + master_key).digest()[:KEY_ID_SIZE]


class MasterKeys:
    """The master key new objects are wrapped with, and the old keys that still open theirs."""

    def __init__(self, current: bytes, old: Iterable[bytes] = ()) -> None:
        for key in (current, *old):
            if len(key) != 32:
                raise ValueError("a storage master key is 32 bytes")
        self.current = current
        self.current_id = key_id(current)
        self._by_id = {key_id(key): key for key in old}
        self._by_id[self.current_id] = current

    def get(self, kid: bytes) -> bytes:
        try:
            return self._by_id[kid]
        except KeyError:
            raise UnknownMasterKey(
                f"the object was wrapped by master key {kid.hex()}, which is not configured"
            ) from None


class Sealer:
    """Encrypts one object: `header`, then `seal` each segment in order, the last flagged."""

    def __init__(self, keys: MasterKeys, object_key: str, segment_size: int = SEGMENT_SIZE):
        if segment_size not in _SEGMENT_SIZES:
            raise ValueError(f"segment size {segment_size} is out of bounds")
        data_key = AESGCM.generate_key(bit_length=256)
        self._prefix = os.urandom(_NONCE_PREFIX_SIZE)
        fixed = _FIXED.pack(MAGIC, VERSION, segment_size, keys.current_id, self._prefix)
        wrap_nonce = os.urandom(_WRAP_NONCE_SIZE)
        wrapped = AESGCM(keys.current).encrypt(wrap_nonce, data_key, _wrap_aad(fixed, object_key))
        self.header = fixed + wrap_nonce + wrapped
        self.segment_size = segment_size
        self._aead = AESGCM(data_key)
        self._counter = 0
        self._done = False

    def seal(self, plaintext: bytes, *, last: bool) -> bytes:
        if self._done:
            raise ValueError("the last segment is sealed already")
        if len(plaintext) > self.segment_size or (not last and len(plaintext) != self.segment_size):
            raise ValueError("only the last segment may be shorter than the segment size")
        if self._counter >= _MAX_SEGMENTS:
            raise ValueError("an object holds at most 2**32 segments")
        sealed = self._aead.encrypt(_nonce(self._prefix, self._counter, last), plaintext, None)
        self._counter += 1
        self._done = last
        return sealed


class Opener:
    """Decrypts one object's segments in order; built from its header by `open_header`."""

    def __init__(self, data_key: bytes, prefix: bytes, segment_size: int) -> None:
        self._aead = AESGCM(data_key)
        self._prefix = prefix
        self.segment_size = segment_size
        self._counter = 0

    def open(self, sealed: bytes, *, last: bool) -> bytes:
        if self._counter >= _MAX_SEGMENTS:
            raise ObjectCorrupted("the object has more segments than the format allows")
        try:
            plaintext = self._aead.decrypt(_nonce(self._prefix, self._counter, last), sealed, None)
        except InvalidTag:
            raise ObjectCorrupted(
                f"segment {self._counter} fails authentication (changed, moved or truncated)"
            ) from None
        self._counter += 1
        return plaintext


def open_header(header: bytes, keys: MasterKeys, object_key: str) -> Opener:
    """Unwrap the object's data key; `ObjectCorrupted` or `UnknownMasterKey` if it does not."""
    if len(header) != HEADER_SIZE:
        raise ObjectCorrupted("the object is shorter than its header")
    fixed = header[: _FIXED.size]
    magic, version, segment_size, kid, prefix = _FIXED.unpack(fixed)
    if magic != MAGIC or version != VERSION:
        raise ObjectCorrupted("not an encrypted object of a known version")
    if segment_size not in _SEGMENT_SIZES:
        raise ObjectCorrupted("the header names an impossible segment size")
    master = keys.get(kid)
    wrap_nonce = header[_FIXED.size : _FIXED.size + _WRAP_NONCE_SIZE]
    wrapped = header[_FIXED.size + _WRAP_NONCE_SIZE :]
    try:
        data_key = AESGCM(master).decrypt(wrap_nonce, wrapped, _wrap_aad(fixed, object_key))
    except InvalidTag:
        raise ObjectCorrupted(
            "the object's key does not unwrap (header changed, or stored under another key)"
        ) from None
    return Opener(data_key, prefix, segment_size)


def segment_size_of(header: bytes) -> int:
    """The segment size a header names (unauthenticated: for sizes, not for decrypting)."""
    if len(header) != HEADER_SIZE or header[:3] != MAGIC:
        raise ObjectCorrupted("not an encrypted object of a known version")
    return _FIXED.unpack(header[: _FIXED.size])[2]


def plaintext_size(stored_size: int, segment_size: int) -> int:
    """The plaintext size of a well-formed object stored in `stored_size` bytes."""
    body = stored_size - HEADER_SIZE
    if body < TAG_SIZE:
        raise ObjectCorrupted("the object is shorter than its header and one segment")
    segments = -(-body // (segment_size + TAG_SIZE))
    return body - segments * TAG_SIZE


def _nonce(prefix: bytes, counter: int, last: bool) -> bytes:
    return prefix + counter.to_bytes(4, "big") + (b"\x01" if last else b"\x00")


def _wrap_aad(fixed: bytes, object_key: str) -> bytes:
    return fixed + object_key.encode("utf-8")
