"""The Flask extensions, created once and bound to an app in `create_app`."""

from __future__ import annotations

from http import HTTPStatus

from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_smorest import Api
from flask_smorest import Blueprint as SmorestBlueprint
from flask_smorest.utils import prepare_response
from flask_sqlalchemy import SQLAlchemy
from webargs.flaskparser import FlaskParser

from loyalty.db import Base
from loyalty.errors import PROBLEM_MIME
from loyalty.schemas import ProblemSchema, refuse_deep_json


class LoyaltyApi(Api):
    """flask-smorest, documenting errors as problem+json; `loyalty.errors` answers them."""

    ERROR_SCHEMA = ProblemSchema

    def _register_error_handlers(self) -> None:
        pass

    def _register_responses(self) -> None:
        """flask-smorest's error responses, under the media type they are served as."""
        for name, description in [(status.name, status.phrase) for status in HTTPStatus if status >= 400] + [
                ("DEFAULT_ERROR", "Default error response")]:
            response = {"description": description, "schema": self.ERROR_SCHEMA}
            prepare_response(response, self.spec, PROBLEM_MIME)
            self.spec.components.response(name, response, lazy=True)

class StrictParser(FlaskParser):
    """Query strings, like bodies, are judged by the schema, which refuses unknown fields."""

    DEFAULT_UNKNOWN_BY_LOCATION = {
        **FlaskParser.DEFAULT_UNKNOWN_BY_LOCATION, "query": None, "querystring": None
    }

    def _raw_load_json(self, req):
        """Bodies nested past MAX_JSON_DEPTH are refused before the parser recurses into them."""
        refuse_deep_json(req.get_data(cache=True))
        return super()._raw_load_json(req)


class Blueprint(SmorestBlueprint):
    """The blueprint every domain's api.py uses."""

    ARGUMENTS_PARSER = StrictParser()


db = SQLAlchemy(model_class=Base)
# Batch mode lets Alembic alter tables on SQLite, which has no ALTER COLUMN.
migrate = Migrate(render_as_batch=True, compare_type=True)
login_manager = LoginManager()
# No default limits: only the endpoints that name a limit (login) are throttled.
limiter = Limiter(key_func=get_remote_address, default_limits=[])
api = LoyaltyApi()
