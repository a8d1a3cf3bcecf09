"""WSGI entry point: `flask --app wsgi ...` and `gunicorn wsgi:app`."""

from loyalty import create_app

app = create_app()
