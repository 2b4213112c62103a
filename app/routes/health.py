from flask import Blueprint

from ..controllers.health import health
from ..middleware.auth import public

bp = Blueprint("health", __name__, url_prefix="/api")
bp.add_url_rule("/health", "health", public(health), methods=["GET"])
