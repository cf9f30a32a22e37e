"""A staff visit to a tenant's site for tests: the console's hand-off followed by the test client
(as MSP staff do it), so the visit carries the staff role's tenant permissions."""

from __future__ import annotations

import html
import re
from urllib.parse import urlsplit


def open_tenant(client, tenant) -> None:
    """The signed-in staff member opens `tenant` from the console; the client is then on a
    visit to the tenant's site."""
    response = client.post(f"/tenants/{tenant.slug}/open", headers={"Host": "localhost"})
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    link = re.search(r'id="handoff" href="([^"]+)"', response.get_data(as_text=True)).group(1)
    path = urlsplit(html.unescape(link)).path
    landed = client.get(path, headers={"Host": f"{tenant.slug}.localhost"})
    assert landed.status_code == 303, landed.get_data(as_text=True)[:500]
