"""Sign-in machinery shared by staff and tenant users: throttling (and, later, MFA)."""
