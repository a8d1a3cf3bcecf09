"""Scheduled jobs, run once by `flask --app wsgi loyalty jobs run <job>`."""
