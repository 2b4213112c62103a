"""Domain errors, one declaration each: its stable `code`, its HTTP `status`
and `when` it happens. The HTTP layer answers with that status
(middleware/errors.py) and the API document and docs' error table are made
from these same classes (`catalogue`), so no second list can disagree."""
import logging


class ServiceError(Exception):
    code = "error"
    status = 500
    when = ""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class NotFound(ServiceError):
    code, status, when = "not_found", 404, "unknown or malformed session id"


class Deleted(ServiceError):
    code, status = "session_deleted", 404
    when = "the session was ended by DELETE (listings still show it, for accounting)"


class Forbidden(ServiceError):
    code, status, when = "forbidden", 403, "another user's session or usage, or an admin's route"


class CommandDenied(ServiceError):
    code, status, when = "command_denied", 403, "the command policy refused the command (naming it and why)"

    def __init__(self, message: str, verb: str) -> None:
        super().__init__(message)
        self.verb = verb


class NotActive(ServiceError):
    code, status, when = "session_not_active", 409, "the session is not in a state for this (not active, ended)"


class SessionBusy(ServiceError):
    code, status = "session_busy", 409
    when = "another command of the same session is running (one at a time; with what and since when)"
    service_own = False         # busy with the service's own work (a render), not a user's command


class SessionFileRejected(ServiceError):
    code, status = "session_file_rejected", 409
    when = "a suspended session's file does not match the HMAC the service recorded: never opened"


class Resuming(ServiceError):
    code, status, when = "session_resuming", 409, "the session was suspended and is being resumed (`Retry-After`)"


class UnreadableStructure(ServiceError):
    code, status, when = "unreadable_structure", 422, "a file ChimeraX cannot open (create with a file)"


class SceneTooLarge(ServiceError):
    code, status = "scene_too_large", 413
    when = ("a scene over SCENE_MAX_BYTES, or a render or export the session's memory (SESSION_MEMORY_MB, "
            "SESSION_ADDRESS_SPACE_MB) cannot hold")


class UserLimit(ServiceError):
    code, status = "user_session_limit", 429
    when = "the user has MAX_SESSIONS_PER_USER live or MAX_SUSPENDED_PER_USER suspended sessions (`Retry-After`)"


class ChimeraXDied(ServiceError):
    code, status, when = "chimerax_died", 502, "ChimeraX died during the request"


class SnapshotFailed(ServiceError):
    code, status, when = "snapshot_failed", 502, "ChimeraX could not render or export what was asked"


class SuspendFailed(ServiceError):
    code, status, when = "suspend_failed", 502, "ChimeraX could not save the session to suspend it"


class Capacity(ServiceError):
    code, status, when = "capacity_exhausted", 503, "MAX_SESSIONS reached (`Retry-After`)"


class ChimeraXUnavailable(ServiceError):
    code, status, when = "chimerax_unavailable", 503, "no ChimeraX executable was found (`Retry-After`)"


class StartupFailed(ServiceError):
    code, status, when = "startup_failed", 503, "ChimeraX could not be started (`Retry-After`)"


class StoreDown(ServiceError):
    code, status = "store_unavailable", 503
    when = "the database is down: locked, read-only, unreachable (`Retry-After`)"


class Unreachable(ServiceError):
    code, status = "session_unreachable", 503
    when = "the session's process runs where this instance cannot reach (`Retry-After`)"


class RenderingUnavailable(ServiceError):
    code, status, when = "rendering_unavailable", 503, "this ChimeraX cannot render offscreen (no OSMesa)"


class CommandTimeout(ServiceError):
    code, status, when = "command_timeout", 504, "ChimeraX did not answer within COMMAND_TIMEOUT"


def domain_errors() -> list[type[ServiceError]]:
    """Every ServiceError subclass the service defines, wherever it is declared."""
    from .sessions import workspace  # noqa: F401  (declares the file errors)
    found, todo = [], list(ServiceError.__subclasses__())
    while todo:
        cls = todo.pop(0)
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


def log_fault(logger: logging.Logger, message: str, *args: object) -> None:
    """Log the exception being handled: a dependency's fault (the store down)
    in one line, as requests answer it with 503; anything else, a bug of
    ours, with its traceback."""
    import sys

    from ..store import StoreUnavailable
    error = sys.exc_info()[1]
    if isinstance(error, StoreUnavailable):
        logger.warning(message + ": the store is unavailable (%s)", *args, error)
    else:
        logger.exception(message, *args)


class NothingToInterrupt(ServiceError):
    code, status, when = "not_running", 409, "no command (or not the one named) is running in the session"


class TooManyStreams(ServiceError):
    code, status, when = "too_many_streams", 429, "the user has EVENT_STREAMS_PER_USER event streams open"


class StreamsBusy(ServiceError):
    code, status, when = ("streams_unavailable", 503,
                          "the worker serves EVENT_STREAMS_PER_WORKER event streams already (Retry-After)")


class TokenExpired(ServiceError):
    code, status, when = "token_expired", 401, "a token (the service's, or the portal's OIDC token) past its expiry"


class InvalidTokenRequest(ServiceError):
    code, status, when = ("invalid_token", 422,
                          "a token asked for with a lifetime or an act_as it cannot have (saying which)")


class TooManyLinks(ServiceError):
    code, status, when = "too_many_links", 409, "the session has SHARE_LINKS_PER_SESSION live share links"
