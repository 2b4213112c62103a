"""Log records carry the request id; LOG_FORMAT=json writes one JSON object a line."""
import json
import logging
import time

from flask import g, has_request_context


class RequestIdFilter(logging.Filter):
    """Stamps every record made while handling a request with that request's id."""

    def filter(self, record):
        record.request_id = (g.get("request_id", "-") if has_request_context() else "-")
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record):
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + ".%03dZ" % record.msecs,
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "request_id": getattr(record, "request_id", "-"),
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)
