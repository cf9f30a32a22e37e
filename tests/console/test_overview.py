"""The console overview: tenants near their user limit, and a broken tenant schema
that must not break the page."""

from portal.db import db
from tests.console.support import HOST


def test_overview_lists_tenants_near_their_user_limit(client, sign_in_as, make_tenant):
    from portal.accounts.lifecycle import create_user
    from portal.compliance.audit import Actor

    sign_in_as()
    full = make_tenant(name="Nearly Full Org", max_users=2)
    roomy = make_tenant(name="Roomy Org", max_users=100)
    for tenant, n in ((full, 2), (roomy, 1)):
        with db.tenant_scope(tenant) as session:
            for i in range(n):
                create_user(session, email=f"u{i}@x.example", actor=Actor.system("test"))
    overview = client.get("/", headers=HOST).data.decode()
    assert "Nearly Full Org" in overview and "2 of 2 users" in overview
    assert "Roomy Org" not in overview.split("Near their user limit")[1].split("</section>")[0]
    page = client.get(f"/tenants/{full.slug}", headers=HOST).data.decode()
    assert "2 of 2" in page and "limit reached" in page


def test_a_tenant_without_a_users_table_does_not_break_the_overview(
    client, sign_in_as, make_tenant
):
    sign_in_as()
    broken = make_tenant(max_users=5)
    with db.owner_engine.begin() as conn:
        conn.exec_driver_sql(f'ALTER TABLE "{broken.schema}".users RENAME TO users_gone')
    try:
        assert client.get("/", headers=HOST).status_code == 200
        page = client.get(f"/tenants/{broken.slug}", headers=HOST)
        assert page.status_code == 200 and b"unknown" in page.data
    finally:
        with db.owner_engine.begin() as conn:
            conn.exec_driver_sql(f'ALTER TABLE "{broken.schema}".users_gone RENAME TO users')
