"""After-commit side effects: run once after commit, dropped with the transaction (or the
savepoint) they were registered in."""

from __future__ import annotations

import pytest

from portal.db import db, on_commit


def test_callbacks_run_after_commit(app):
    ran = []
    with db.platform_scope() as session:
        on_commit(session, lambda: ran.append("a"))
        assert ran == []
    assert ran == ["a"]


def test_rolled_back_transaction_drops_its_callbacks(app):
    ran = []
    with pytest.raises(RuntimeError), db.platform_scope() as session:
        on_commit(session, lambda: ran.append("a"))
        raise RuntimeError("fail")
    assert ran == []


def test_rolled_back_savepoint_drops_only_its_own_callbacks(app):
    ran = []
    with db.platform_scope() as session:
        on_commit(session, lambda: ran.append("before"))
        try:
            with session.begin_nested():
                on_commit(session, lambda: ran.append("inside"))
                raise RuntimeError("one item refused")
        except RuntimeError:
            pass
        with session.begin_nested():
            on_commit(session, lambda: ran.append("released"))
        on_commit(session, lambda: ran.append("after"))
    assert ran == ["before", "released", "after"]
