"""The portal starts and answers its health endpoints on any host."""


def test_healthz_answers_on_any_host(client):
    response = client.get("/healthz", headers={"Host": "10.1.2.3"})
    assert response.status_code == 200
    assert response.json == {"status": "ok"}


def test_readyz_reports_database_and_redis(client):
    response = client.get("/readyz", headers={"Host": "localhost"})
    assert response.status_code == 200
    assert response.json["checks"] == {"database": "ok", "redis": "ok"}


def test_a_pooled_connection_killed_while_idle_is_replaced_not_reported(urls, client, monkeypatch):
    import psycopg
    from sqlalchemy import text

    from portal import db as db_module
    from portal.db import db

    with db.engine.connect() as conn:
        victim = conn.execute(text("SELECT pg_backend_pid()")).scalar()
    with psycopg.connect(urls["database_url"], autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", (victim,))
    monkeypatch.setattr(db_module, "IDLE_PING_SECONDS", 0.0)
    for _ in range(3):
        assert client.get("/readyz", headers={"Host": "localhost"}).status_code == 200
