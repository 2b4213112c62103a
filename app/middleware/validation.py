"""Request bodies, forms and query strings through marshmallow (a webargs
parser for flask-smorest), answering bad input in the one error shape."""
import json

from flask import current_app
from marshmallow import fields
from marshmallow.utils import missing
from webargs.flaskparser import FlaskParser

from .errors import ApiError


def _once_each(multidict, into, lists=()):
    """Each field given once, but for the schema's lists (`lists`: their names),
    which take every value given."""
    for key in multidict:
        if not isinstance(key, str):        # a part whose name the parser could not read
            raise ApiError(400, "validation_error", "the request has invalid fields",
                           fields={"_body": ["A form field has no readable name."]})
        values = multidict.getlist(key)
        if key in lists:
            into[key] = values
            continue
        if len(values) > 1 or key in into:
            raise ApiError(400, "validation_error", "the request has invalid fields",
                           fields={key: ["Give this field once."]})
        into[key] = values[0]
    return into


class RequestParser(FlaskParser):
    DEFAULT_VALIDATION_STATUS = 400
    DEFAULT_UNKNOWN_BY_LOCATION = {}        # each schema says (RAISE: unknown fields are errors)
    __location_map__ = dict(multipart="load_multipart", **FlaskParser.__location_map__)

    def load_json(self, req, schema):
        # A body of another declared type is another decorator's (415 is
        # decided once per route, from the declarations: routes/api.py).
        if req.mimetype != "application/json":
            return missing
        raw = req.get_data(cache=True)     # raises 413 past MAX_CONTENT_LENGTH
        if not raw.strip():
            return missing
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise ApiError(400, "invalid_json", "the request body is not valid JSON") from None
        if not isinstance(data, dict):
            raise ApiError(400, "validation_error", "the JSON body must be an object",
                           fields={"_body": ["Must be a JSON object."]})
        return data

    def load_querystring(self, req, schema):
        return _once_each(req.args, {}, [field.data_key or name for name, field in schema.fields.items()
                                         if isinstance(field, fields.List)])

    def load_multipart(self, req, schema):
        """Form fields and files as one object, each given once."""
        if req.mimetype != "multipart/form-data":
            return missing
        req.max_content_length = current_app.config["MAX_UPLOAD_BYTES"]     # uploads outgrow JSON
        return _once_each(req.files, _once_each(req.form, {}))    # raises 413 past the limit

    def handle_error(self, error, req, schema, *, error_status_code, error_headers):
        fields = {}
        for messages in error.messages.values():        # {location: {field: [...]}}
            if not isinstance(messages, dict):
                messages = {"_body": messages}
            fields.update((str(name), problem) for name, problem in messages.items())
        raise ApiError(400, "validation_error", "the request has invalid fields", fields=fields)
