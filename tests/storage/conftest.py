"""Storage fixtures: the local backend in a temporary folder, and S3 against moto's standalone
server over HTTP on loopback (a real S3 protocol conversation, not an in-process mock)."""

from __future__ import annotations

import os
import socket
import uuid

import pytest

from portal.config import Settings
from portal.storage import open_storage


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def s3_endpoint():
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def master_key() -> bytes:
    return os.urandom(32)


@pytest.fixture(params=["local", "s3"])
def make_storage(request, tmp_path, master_key):
    """Open storages on one backend (a fresh folder or bucket per test) with chosen keys."""
    if request.param == "s3":
        endpoint = request.getfixturevalue("s3_endpoint")
        place = dict(
            s3_bucket=f"portal-test-{uuid.uuid4().hex[:12]}",
            s3_endpoint_url=endpoint,
            s3_region="us-east-1",
            s3_access_key_id="testing",
            s3_secret_access_key="testing",
        )
    else:
        place = dict(storage_path=tmp_path / "storage")
    created = []

    def make(key: bytes = master_key, old: tuple[bytes, ...] = ()):
        storage = open_storage(
            Settings(
                instance_path=tmp_path, storage_master_key=key, storage_old_master_keys=old, **place
            )
        )
        if request.param == "s3" and not created:
            storage.backend.client.create_bucket(Bucket=place["s3_bucket"])
        created.append(storage)
        return storage

    return make


@pytest.fixture
def storage(make_storage):
    return make_storage()


@pytest.fixture
def local_storage(tmp_path, master_key):
    return open_storage(
        Settings(instance_path=tmp_path, storage_path=tmp_path / "s", storage_master_key=master_key)
    )
