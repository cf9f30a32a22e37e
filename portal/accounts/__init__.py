"""Tenant users: lifecycle, roles and rights, invitations, security settings, bulk actions.

One module per concern, imported in this order only (no cycles; `make lint` will check it):
validation ← roles, settings, links ← lifecycle ← invitations ← bulk. Every service runs in a
tenant scope, flushes but never commits, writes its audit entry in the same transaction and
sends mail only after commit; one that would change nothing returns False.
"""
