"""WSGI entry point for production: `gunicorn -w 4 -b 0.0.0.0:8000 wsgi:app`."""

from portal import create_app

app = create_app()
