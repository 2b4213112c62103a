"""Log records carry the request id; LOG_FORMAT=json writes one JSON object a line.

In the text format a message's control characters are escaped, so a value
taken from a request (a path with %0a, a user name, a header) can never
start a line of its own and forge an entry. Tracebacks keep their lines.
"""
import json
import logging
import re
import time

from flask import g, has_request_context


class RequestIdFilter(logging.Filter):
    """Stamps every record made while handling a request with that request's id."""

    def filter(self, record):
        record.request_id = (g.get("request_id", "-") if has_request_context() else "-")
        return True


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def escape_controls(text):
    return _CONTROL.sub(lambda m: "\\n" if m.group() == "\n" else "\\x%02x" % ord(m.group())
                        if ord(m.group()) < 0x100 else "\\u%04x" % ord(m.group()), text)


class TextFormatter(logging.Formatter):
    def formatMessage(self, record):
        record.message = escape_controls(record.message)
        return super().formatMessage(record)


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
