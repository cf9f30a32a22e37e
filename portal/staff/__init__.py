"""MSP staff: the platform operators' accounts, sign-in and sessions, two-factor authentication,
and the tenants each member may see (platform schema).

One module per concern, imports flowing one way: models ← sessions (password step, sessions,
ending tenant visits) ← members (create, role, deactivate, password) | mfa (second step,
enrolment, backup codes, reset) | scope (which tenants a member sees).
"""
