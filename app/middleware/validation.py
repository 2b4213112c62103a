"""Request bodies and query strings through marshmallow, with field-level errors."""
import json

from flask import request
from marshmallow import ValidationError

from .errors import ApiError


def _validated(schema, data):
    try:
        return schema.load(data)
    except ValidationError as err:
        raise ApiError(400, "validation_error", "the request has invalid fields",
                       fields=err.messages) from None


def json_body(schema, required=True):
    """The body as a validated dict. An empty body is `{}` when not required."""
    raw = request.get_data(cache=True)     # raises 413 past MAX_CONTENT_LENGTH
    if not raw.strip():
        if required:
            raise ApiError(400, "validation_error", "a JSON body is required",
                           fields={"_body": ["Missing data for required body."]})
        return _validated(schema, {})
    if request.mimetype != "application/json":
        raise ApiError(415, "unsupported_media_type", "send the body as application/json")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "invalid_json", "the request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ApiError(400, "validation_error", "the JSON body must be an object",
                       fields={"_body": ["Must be a JSON object."]})
    return _validated(schema, data)


def query_args(schema):
    args = {}
    for key in request.args:
        values = request.args.getlist(key)
        if len(values) > 1:
            raise ApiError(400, "validation_error", "the query has invalid fields",
                           fields={key: ["Give this parameter once."]})
        args[key] = values[0]
    return _validated(schema, args)


def multipart_form(schema, max_bytes, file_field="file"):
    """(validated form fields, the uploaded file or None) of a multipart body."""
    request.max_content_length = max_bytes     # uploads may be larger than JSON bodies
    files = request.files                        # raises 413 past the limit
    extra = [name for name in files if name != file_field]
    if extra or len(files.getlist(file_field)) > 1:
        raise ApiError(400, "validation_error", "the request has invalid fields",
                       fields={name: ["Unknown file field."] for name in extra} or
                       {file_field: ["Send one file."]})
    form = {key: request.form[key] for key in request.form}
    return _validated(schema, form), files.get(file_field)
