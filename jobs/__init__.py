"""RQ entry points: thin functions that open a scope and call a service."""
