"""Encrypted object storage (portal/storage): round trips on local disk and S3, every kind of
tampering refused, master-key rotation, all-or-nothing writes, keys checked, memory flat."""

from __future__ import annotations

import base64
import io
import os
import stat
import tracemalloc
import zipfile

import pytest

from portal.config import ConfigError, Settings, load_settings
from portal.storage import development_master_key, open_storage
from portal.storage.envelope import HEADER_SIZE, SEGMENT_SIZE, TAG_SIZE, key_id
from portal.storage.errors import ObjectCorrupted, ObjectNotFound, UnknownMasterKey
from portal.storage.s3 import PART_SIZE

SEALED = SEGMENT_SIZE + TAG_SIZE
MiB = 1024 * 1024


def pattern(size: int, seed: int = 0) -> bytes:
    """Distinct, non-repeating-per-segment bytes, so a swapped segment changes the plaintext."""
    block = b"".join(i.to_bytes(4, "big") for i in range(seed, seed + 16384))  # 64 KiB
    return (block * (size // len(block) + 1))[:size]


def store(storage, key: str, data: bytes, chunk: int = 7000) -> None:
    with storage.writer(key) as out:
        for start in range(0, len(data), chunk):
            out.write(data[start : start + chunk])


def load(storage, key: str) -> bytes:
    return b"".join(storage.reader(key))


def raw(storage, key: str) -> bytes:
    """The stored (encrypted) bytes, straight from the backend."""
    with storage.backend.open_download(key) as stream:
        return stream.read()


def put_raw(storage, key: str, data: bytes) -> None:
    upload = storage.backend.open_upload(key)
    upload.write(data)
    upload.commit()


def sealed_segments(blob: bytes) -> list[bytes]:
    body = blob[HEADER_SIZE:]
    return [body[i : i + SEALED] for i in range(0, len(body), SEALED)]


@pytest.mark.parametrize(
    "size",
    [0, 1, 1000, SEGMENT_SIZE - 1, SEGMENT_SIZE, SEGMENT_SIZE + 1, 3 * SEGMENT_SIZE + 5],
    ids=["empty", "one-byte", "small", "segment-less-1", "one-segment", "segment+1", "multi"],
)
def test_objects_round_trip_with_their_plaintext_size(storage, size):
    data = pattern(size)
    store(storage, "tenants/acme/exports/1.zip", data)
    assert storage.exists("tenants/acme/exports/1.zip")
    assert storage.size("tenants/acme/exports/1.zip") == size
    assert load(storage, "tenants/acme/exports/1.zip") == data
    expected_segments = max(1, -(-size // SEGMENT_SIZE))
    assert len(raw(storage, "tenants/acme/exports/1.zip")) == (
        HEADER_SIZE + size + expected_segments * TAG_SIZE
    )


def test_an_object_larger_than_a_part_goes_up_in_parts_and_comes_back(storage):
    data = pattern(PART_SIZE + 3 * MiB + 17, seed=5)
    store(storage, "big.bin", data, chunk=MiB)
    assert storage.size("big.bin") == len(data)
    chunks = list(storage.reader("big.bin"))
    assert all(len(chunk) == SEGMENT_SIZE for chunk in chunks[:-1])
    assert b"".join(chunks) == data
    if hasattr(storage.backend, "bucket"):
        head = storage.backend.client.head_object(Bucket=storage.backend.bucket, Key="big.bin")
        assert head["ETag"].strip('"').endswith("-2")  # a multipart upload of two parts


def test_a_changed_byte_anywhere_is_refused(storage):
    store(storage, "a.bin", pattern(3 * SEGMENT_SIZE))
    blob = raw(storage, "a.bin")
    for offset in (HEADER_SIZE + SEALED + 100, len(blob) - 1):
        changed = bytearray(blob)
        changed[offset] ^= 0x01
        put_raw(storage, "a.bin", bytes(changed))
        with pytest.raises(ObjectCorrupted):
            load(storage, "a.bin")
    for offset in (5, 20, HEADER_SIZE - 1):  # segment size, nonce prefix, wrapped key
        changed = bytearray(blob)
        changed[offset] ^= 0x01
        put_raw(storage, "a.bin", bytes(changed))
        with pytest.raises(ObjectCorrupted):
            storage.reader("a.bin")


def test_a_reader_yields_only_the_chunks_before_the_tampered_segment(storage):
    data = pattern(3 * SEGMENT_SIZE)
    store(storage, "a.bin", data)
    changed = bytearray(raw(storage, "a.bin"))
    changed[HEADER_SIZE + SEALED + 1] ^= 0x80
    put_raw(storage, "a.bin", bytes(changed))
    received = []
    with pytest.raises(ObjectCorrupted, match="segment 1"):
        for chunk in storage.reader("a.bin"):
            received.append(chunk)
    assert received == [data[:SEGMENT_SIZE]]


def test_swapped_segments_are_refused(storage):
    store(storage, "a.bin", pattern(3 * SEGMENT_SIZE + 10))
    blob = raw(storage, "a.bin")
    first, second, *rest = sealed_segments(blob)
    put_raw(storage, "a.bin", blob[:HEADER_SIZE] + second + first + b"".join(rest))
    with pytest.raises(ObjectCorrupted):
        load(storage, "a.bin")


def test_truncation_at_or_inside_the_last_segment_and_appended_bytes_are_refused(storage):
    store(storage, "a.bin", pattern(2 * SEGMENT_SIZE + 10))
    blob = raw(storage, "a.bin")
    segments = sealed_segments(blob)
    for cut in (
        blob[:HEADER_SIZE] + b"".join(segments[:-1]),  # the last segment dropped whole
        blob[:-5],  # part of the last segment
        blob[:HEADER_SIZE],  # every segment
        blob + b"\x00" * 16,  # something appended
    ):
        put_raw(storage, "a.bin", cut)
        with pytest.raises(ObjectCorrupted):
            load(storage, "a.bin")


def test_a_full_last_segment_dropped_is_refused(storage):
    # Plaintext a whole number of segments long: dropping the last one leaves full segments.
    store(storage, "a.bin", pattern(2 * SEGMENT_SIZE))
    blob = raw(storage, "a.bin")
    put_raw(storage, "a.bin", blob[: HEADER_SIZE + SEALED])
    with pytest.raises(ObjectCorrupted):
        load(storage, "a.bin")


def test_an_object_moved_to_another_key_does_not_open(storage):
    store(storage, "tenants/acme/export.zip", b"acme's data")
    put_raw(storage, "tenants/globex/export.zip", raw(storage, "tenants/acme/export.zip"))
    with pytest.raises(ObjectCorrupted):
        storage.reader("tenants/globex/export.zip")


def test_another_master_key_cannot_open_an_object(make_storage, master_key):
    make_storage().writer("a.bin").close()
    stranger = make_storage(os.urandom(32))
    with pytest.raises(UnknownMasterKey):
        stranger.reader("a.bin")


def test_an_old_master_key_still_opens_its_objects_after_rotation(make_storage, master_key):
    store(make_storage(), "old.bin", b"written before rotation")
    new_key = os.urandom(32)
    rotated = make_storage(new_key, old=(master_key,))
    store(rotated, "new.bin", b"written after rotation")
    assert load(rotated, "old.bin") == b"written before rotation"
    assert load(rotated, "new.bin") == b"written after rotation"
    # New objects name the new key; once the old key is retired, its objects stay closed.
    assert key_id(new_key) in raw(rotated, "new.bin")[:HEADER_SIZE]
    retired = make_storage(new_key)
    assert load(retired, "new.bin") == b"written after rotation"
    with pytest.raises(UnknownMasterKey):
        retired.reader("old.bin")


def test_an_abandoned_write_leaves_nothing_behind(storage):
    for size in (1000, PART_SIZE + MiB):  # a single PUT, and a multipart upload under way
        with pytest.raises(RuntimeError, match="worker failed"):
            with storage.writer("a.bin") as out:
                out.write(pattern(size))
                raise RuntimeError("worker failed")
        assert not storage.exists("a.bin")
        with pytest.raises(ObjectNotFound):
            storage.reader("a.bin")
    assert list(storage.list()) == []
    assert_no_partial_writes(storage)


def test_an_abandoned_overwrite_keeps_the_previous_object(storage):
    store(storage, "a.bin", b"the complete first version")
    writer = storage.writer("a.bin")
    writer.write(pattern(3 * SEGMENT_SIZE))
    assert load(storage, "a.bin") == b"the complete first version"
    writer.abort()
    assert load(storage, "a.bin") == b"the complete first version"
    with pytest.raises(ValueError):
        writer.write(b"more")
    assert_no_partial_writes(storage)


def test_writes_left_by_a_dead_writer_are_removed(storage):
    writer = storage.writer("a.bin")
    writer.write(pattern(PART_SIZE + MiB))  # the writer "dies" with a part uploaded
    if not hasattr(storage.backend, "bucket"):  # moto dates every upload in 2010
        assert storage.remove_abandoned_writes(older_than_seconds=3600) == 0
    assert storage.remove_abandoned_writes(older_than_seconds=-60) == 1
    assert_no_partial_writes(storage)
    assert not storage.exists("a.bin")


def assert_no_partial_writes(storage) -> None:
    backend = storage.backend
    if hasattr(backend, "bucket"):
        uploads = backend.client.list_multipart_uploads(Bucket=backend.bucket)
        assert uploads.get("Uploads", []) == []
    else:
        partial = backend.root / ".partial"
        assert not partial.exists() or list(partial.iterdir()) == []


@pytest.mark.parametrize(
    "key",
    [
        "",
        "/etc/passwd",
        "../outside",
        "a/../../b",
        "a/./b",
        "a//b",
        "a/",
        ".partial/x",
        "a/.hidden",
        "with space",
        "tab\tkey",
        "ünïcode",
        "back\\slash",
        "nul\x00byte",
        "k" * 513,
    ],
)
def test_bad_keys_are_refused_before_any_io(local_storage, key):
    storage = local_storage
    for use in (storage.writer, storage.reader, storage.exists, storage.delete, storage.size):
        with pytest.raises(ValueError, match="not a valid storage key"):
            use(key)


def test_listing_deleting_and_missing_objects(storage):
    for key in ("tenants/acme/exports/1.zip", "tenants/acme/exports/2.zip", "tenants/ab/x"):
        store(storage, key, key.encode())
    assert list(storage.list("tenants/acme/")) == [
        "tenants/acme/exports/1.zip",
        "tenants/acme/exports/2.zip",
    ]
    assert sorted(storage.list("tenants/a")) == sorted(storage.list())
    storage.delete("tenants/acme/exports/1.zip")
    storage.delete("tenants/acme/exports/1.zip")  # deleting twice is no error
    assert not storage.exists("tenants/acme/exports/1.zip")
    with pytest.raises(ObjectNotFound):
        storage.reader("tenants/acme/exports/1.zip")
    with pytest.raises(ObjectNotFound):
        storage.size("tenants/acme/exports/1.zip")
    assert load(storage, "tenants/ab/x") == b"tenants/ab/x"


def test_zipfile_writes_straight_into_an_object(storage):
    with storage.writer("export.zip") as out:
        with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("data.json", '{"user": 7}')
            with archive.open("big.csv", "w") as member:
                for row in range(20000):
                    member.write(f"{row},row {row}\n".encode())
    with zipfile.ZipFile(io.BytesIO(load(storage, "export.zip"))) as archive:
        assert archive.testzip() is None
        assert archive.read("data.json") == b'{"user": 7}'
        assert archive.read("big.csv").count(b"\n") == 20000


def test_the_local_files_hold_no_plaintext(local_storage, tmp_path):
    storage = local_storage
    secret = b"alice@example.com,Alice Liddell,+44 20 7946 0000\n"
    store(storage, "tenants/acme/export.csv", secret * 5000)
    files = [path for path in (tmp_path / "s").rglob("*") if path.is_file()]
    assert files
    for path in files:
        content = path.read_bytes()
        assert b"alice@example.com" not in content and b"Liddell" not in content
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_memory_stays_flat_for_a_50_mib_object(local_storage):
    storage = local_storage
    chunk = pattern(MiB)

    def peak_for(size_mib: int) -> int:
        tracemalloc.start()
        try:
            with storage.writer(f"{size_mib}.bin") as out:
                for _ in range(size_mib):
                    out.write(chunk)
            total = 0
            for piece in storage.reader(f"{size_mib}.bin"):
                total += len(piece)
            assert total == size_mib * MiB
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    small, large = peak_for(5), peak_for(50)
    assert large < 4 * MiB, f"peak {large / MiB:.1f} MiB for a 50 MiB object"
    assert large < small + MiB  # ten times the data, the same memory


def test_development_generates_one_master_key_and_keeps_it(tmp_path):
    first = development_master_key(tmp_path)
    assert len(first) == 32 and development_master_key(tmp_path) == first
    path = tmp_path / "storage-master-key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    settings = Settings(instance_path=tmp_path, storage_path=tmp_path / "s")
    store(open_storage(settings), "a.bin", b"kept across restarts")
    assert load(open_storage(settings), "a.bin") == b"kept across restarts"


def test_production_refuses_to_start_without_a_storage_master_key(monkeypatch):
    monkeypatch.setenv("PORTAL_ENV", "production")
    monkeypatch.setenv("SECRET_KEY", "k" * 40)
    monkeypatch.delenv("STORAGE_MASTER_KEY", raising=False)
    with pytest.raises(ConfigError, match="STORAGE_MASTER_KEY"):
        load_settings()
    monkeypatch.setenv("STORAGE_MASTER_KEY", "dG9vIHNob3J0")  # "too short"
    with pytest.raises(ConfigError, match="32 random bytes"):
        load_settings()
    monkeypatch.setenv("STORAGE_MASTER_KEY", "not base64 at all!")
    with pytest.raises(ConfigError, match="32 random bytes"):
        load_settings()
    key = os.urandom(32)
    old = os.urandom(32)
    monkeypatch.setenv("STORAGE_MASTER_KEY", base64.b64encode(key).decode())
    monkeypatch.setenv("STORAGE_OLD_MASTER_KEYS", base64.urlsafe_b64encode(old).decode() + ",")
    settings = load_settings()
    assert settings.storage_master_key == key and settings.storage_old_master_keys == (old,)
    assert base64.b64encode(key).decode() not in repr(settings)


def test_s3_credentials_come_in_pairs(monkeypatch):
    monkeypatch.setenv("S3_ACCESS_KEY_ID", "AKIA")
    monkeypatch.delenv("S3_SECRET_ACCESS_KEY", raising=False)
    with pytest.raises(ConfigError, match="S3_SECRET_ACCESS_KEY"):
        load_settings()


def test_the_cli_reports_a_missing_storage_key_in_one_line(run_cli, monkeypatch):
    monkeypatch.setenv("PORTAL_ENV", "production")
    monkeypatch.setenv("SECRET_KEY", "k" * 40)
    monkeypatch.delenv("STORAGE_MASTER_KEY", raising=False)
    result = run_cli("tenants", "list")
    assert result.exit_code == 2
    assert "STORAGE_MASTER_KEY" in result.output and "Traceback" not in result.output
