"""The tenant site: what a tenant's own host serves."""
