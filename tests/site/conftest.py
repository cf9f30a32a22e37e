"""Tenant-site fixtures, thin wrappers over tests/site/support.py: users made through the
services, signed in through the real form."""

from __future__ import annotations

from functools import partial

import pytest

from tests.site.support import make_user, sign_in


@pytest.fixture
def site_user():
    """`make_user`: a user in `tenant` with a password and `roles`; returns the (detached) row."""
    return make_user


@pytest.fixture
def sign_in_site(client):
    """`sign_in` with the test client, or another browser given as `client=`."""
    return partial(sign_in, client=client)


@pytest.fixture
def admin(tenant, client):
    """A tenant admin of `tenant`, signed in."""
    return sign_in(tenant, make_user(tenant, ["tenant_admin"], name="Ada Admin"), client=client)
