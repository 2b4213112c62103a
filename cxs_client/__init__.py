"""Python client for the ChimeraX session service: `Client(base_url, token)`."""
from .client import Client, Session
from .errors import (
                     ApiError,
                     BadRequest,
                     ChimeraXFailure,
                     CommandFailed,
                     Conflict,
                     Forbidden,
                     NotFound,
                     RateLimited,
                     Unauthorized,
                     Unavailable,
)
from .events import EventStream

__all__ = ["Client", "Session", "EventStream", "ApiError", "BadRequest", "ChimeraXFailure", "CommandFailed",
           "Conflict", "Forbidden", "NotFound", "RateLimited", "Unauthorized", "Unavailable"]
