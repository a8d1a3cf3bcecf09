"""The staff console (`/console/`) and the member's account pages (`/account/`).

Server-rendered HTML over the same services the API uses: views parse a form, call a service and
render; no business logic lives here or in the templates. Every form carries a CSRF token.
"""

from loyalty.console.web import init_app

__all__ = ["init_app"]
