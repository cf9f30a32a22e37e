"""The portal starts and answers its health endpoints on any host."""


def test_healthz_answers_on_any_host(client):
    response = client.get("/healthz", headers={"Host": "10.1.2.3"})
    assert response.status_code == 200
    assert response.json == {"status": "ok"}


def test_readyz_reports_database_and_redis(client):
    response = client.get("/readyz", headers={"Host": "localhost"})
    assert response.status_code == 200
    assert response.json["checks"] == {"database": "ok", "redis": "ok"}
