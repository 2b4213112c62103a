"""Typed exceptions carrying the service's error code, message and request id."""


class ApiError(Exception):
    """Any error reply: `status`, `code`, `message`, `fields`, `request_id`."""

    def __init__(self, status, code, message, fields=None, request_id=None, retry_after=None):
        super().__init__("%s %s: %s" % (status, code, message))
        self.status, self.code, self.message = status, code, message
        self.fields, self.request_id, self.retry_after = fields, request_id, retry_after


class BadRequest(ApiError):          # 400, 413, 415, 422: fix the request
    pass


class Unauthorized(ApiError):        # 401
    pass


class Forbidden(ApiError):           # 403, including command_denied
    pass


class NotFound(ApiError):            # 404
    pass


class Conflict(ApiError):            # 409: the session is not active
    pass


class RateLimited(ApiError):         # 429: your own session limit
    pass


class ChimeraXFailure(ApiError):     # 502, 504: ChimeraX died or timed out
    pass


class Unavailable(ApiError):         # 503: capacity, store or ChimeraX unavailable; retry later
    pass


class CommandFailed(Exception):
    """ChimeraX ran the command and reported an error (HTTP 200, ok false)."""

    def __init__(self, result):
        error = result.get("error") or {}
        super().__init__("%s: %s" % (error.get("type", "Error"), error.get("message", "")))
        self.result = result


BY_STATUS = {400: BadRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound, 409: Conflict,
             413: BadRequest, 415: BadRequest, 422: BadRequest, 429: RateLimited, 502: ChimeraXFailure,
             503: Unavailable, 504: ChimeraXFailure}
