"""Domain errors. Each carries a stable `code`; the HTTP layer maps codes to statuses."""


class ServiceError(Exception):
    code = "error"

    def __init__(self, message, retry_after=None):
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class NotFound(ServiceError):
    code = "not_found"


class Forbidden(ServiceError):
    code = "forbidden"


class NotActive(ServiceError):
    code = "session_not_active"


class UserLimit(ServiceError):
    code = "user_session_limit"


class Capacity(ServiceError):
    code = "capacity_exhausted"


class ChimeraXUnavailable(ServiceError):
    """No ChimeraX executable, or the store is unreachable: try again later."""
    code = "chimerax_unavailable"


class StartupFailed(ServiceError):
    code = "startup_failed"


class ChimeraXDied(ServiceError):
    code = "chimerax_died"


class CommandTimeout(ServiceError):
    code = "command_timeout"


class StoreDown(ServiceError):
    code = "store_unavailable"


class Unreachable(ServiceError):
    """The session's process runs where this instance's launcher cannot reach."""
    code = "session_unreachable"


class SessionBusy(ServiceError):
    """The session's ChimeraX is running another command: one at a time."""
    code = "session_busy"


class CommandDenied(ServiceError):
    code = "command_denied"

    def __init__(self, message, verb):
        super().__init__(message)
        self.verb = verb


class Deleted(ServiceError):
    """Ended by DELETE: the session no longer exists (404; its record stays in listings, for accounting)."""
    code = "session_deleted"


class UnreadableStructure(ServiceError):
    code = "unreadable_structure"


class RenderingUnavailable(ServiceError):
    code = "rendering_unavailable"


class SnapshotFailed(ServiceError):
    code = "snapshot_failed"


class SceneTooLarge(ServiceError):
    code = "scene_too_large"


class SuspendFailed(ServiceError):
    code = "suspend_failed"


class SessionFileRejected(ServiceError):
    """A suspended session's file does not match the HMAC the service recorded."""
    code = "session_file_rejected"


class Resuming(ServiceError):
    """The session is suspended and being resumed: retry shortly."""
    code = "session_resuming"
