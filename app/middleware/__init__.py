"""What every request passes through: request ids and the log line, the
bearer token, marshmallow validation, and the one JSON error shape."""
