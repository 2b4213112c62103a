"""One declaration per route that both validates and documents (flask-smorest).

Each view says, with decorators, the schemas of what it reads and what it
answers; flask-smorest validates requests with them (through our parser,
which keeps the one error shape) and builds the OpenAPI document from the
same objects, with this app's configured bounds. The errors a route can give
are partly implied by what it is (authenticated; reads a body or a query)
and partly declared (`errors`); what each status means comes from the
declarations of the errors themselves (`error_responses`).
"""
from functools import wraps
import re

from flask import request
from flask_smorest import Api as SmorestApi
from flask_smorest import Blueprint as SmorestBlueprint

from ..middleware.errors import ApiError, catalogue
from ..middleware.validation import RequestParser
from ..schemas.bounds import properties_from
from ..schemas.sessions import ErrorSchema

RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before trying again", "required": True,
                               "schema": {"type": "integer", "minimum": 0}}}
HEADERS = {401: {"WWW-Authenticate": {"schema": {"type": "string"}}}, 429: RETRY_AFTER, 503: RETRY_AFTER}


def error_responses():
    """{status: (description, headers)} of the document's error responses, from
    the one declaration of every error (middleware/errors.py `catalogue`)."""
    return {status: ("; ".join("`%s`: %s" % entry for entry in entries), HEADERS.get(status))
            for status, entries in catalogue().items()}


BODY_LOCATIONS = {"json": "application/json", "multipart": "multipart/form-data"}


def error_response_name(status):
    return "Error%d" % status


class Api(SmorestApi):
    ERROR_SCHEMA = ErrorSchema
    DEFAULT_ERROR_RESPONSE_NAME = None      # each operation lists its errors: no catch-all

    def _register_error_handlers(self):
        """middleware/errors.py answers every error in the one shape."""

    def _init_spec(self, **kwargs):
        super()._init_spec(**kwargs)
        self.ma_plugin.converter.add_attribute_function(properties_from(self._app.config))
        self.spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer"})
        self.spec.components.security_scheme("apiKey", {"type": "apiKey", "in": "header",
                                                        "name": "X-API-Key"})
        for status, (description, headers) in error_responses().items():
            response = {"description": description,
                        "content": {"application/json": {"schema": "Error"}}}
            if headers:
                response["headers"] = headers
            self.spec.components.response(error_response_name(status), response, lazy=True)


class Blueprint(SmorestBlueprint):
    ARGUMENTS_PARSER = RequestParser()
    DEFAULT_LOCATION_CONTENT_TYPE_MAPPING = BODY_LOCATIONS

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._prepare_doc_cbks.append(self._prepare_error_doc)
        self._prepare_doc_cbks.append(_configured_descriptions)

    def add_url_rule(self, rule, endpoint=None, view_func=None, provide_automatic_options=None, **kwargs):
        accepts = getattr(view_func, "_accepts", None)
        if accepts:         # only routes that read a body pay for the check
            view_func = _checking_content_type(view_func, accepts)
        super().add_url_rule(rule, endpoint, view_func, provide_automatic_options, **kwargs)

    def arguments(self, schema, *, location="json", **kwargs):
        # One instance per route, made here: webargs makes one per request
        # from a class (~30 us a request), and loading keeps no state in it.
        schema = schema() if isinstance(schema, type) else schema
        decorate = super().arguments(schema, location=location, **kwargs)
        if location not in BODY_LOCATIONS:
            return decorate

        def decorator(func):
            view = decorate(func)
            view._accepts = getattr(func, "_accepts", ()) + (BODY_LOCATIONS[location],)
            return view
        return decorator

    @staticmethod
    def errors(*statuses):
        """Errors this operation gives beyond those its kind implies."""
        def decorator(func):
            func._errors = getattr(func, "_errors", ()) + statuses
            return func
        return decorator

    def _store_endpoint_docs(self, endpoint, obj, parameters, tags, **options):
        super()._store_endpoint_docs(endpoint, obj, parameters, tags, **options)
        for doc in self._docs[endpoint].values():
            if isinstance(doc, dict):
                doc["errors"] = sorted(set(getattr(obj, "_errors", ())))
                doc["public"] = getattr(obj, "_public", False)
                doc["scope"] = getattr(obj, "_scope", None)

    def _prepare_arguments_doc(self, doc, doc_info, **kwargs):
        """flask-smorest documents one request body; a route may take several
        content types (a create takes JSON or a multipart form with a file)."""
        bodies = [(p["in"], p["required"], p["schema"]) for p in
                  doc_info.get("arguments", {}).get("parameters", []) if p["in"] in BODY_LOCATIONS]
        doc = super()._prepare_arguments_doc(doc, doc_info, **kwargs)   # pops the schemas
        if len(bodies) > 1:
            doc["parameters"] = [p for p in doc.get("parameters", []) if p["in"] not in BODY_LOCATIONS]
            if not doc["parameters"]:
                del doc["parameters"]
            doc["requestBody"] = {"required": any(required for _, required, _ in bodies), "content": {
                BODY_LOCATIONS[location]: {"schema": schema} for location, _, schema in bodies}}
        return doc

    def _prepare_error_doc(self, doc, doc_info, *, app, **kwargs):
        statuses = set(doc_info.get("errors", ()))
        statuses.update((414, 431, 500))        # any request (gunicorn's limits; our bugs)
        if not doc_info.get("public"):
            statuses.update((401, 403, 503))
            # The scope the operation requires (docs/identity.md), stated where clients look.
            required = doc_info.get("scope")
            doc["x-required-scope"] = required
            # Into the docstring flask-smorest makes the description of (after this
            # callback); once, though each app that builds the document comes here.
            docstring = doc_info.setdefault("docstring", {})
            said = "Requires the `%s` scope." % required if required != "any" else "Any valid credentials."
            if said not in (docstring.get("description") or ""):
                docstring["description"] = ((docstring.get("description") or "") + "\n\n" + said).strip()
        if "requestBody" in doc:
            statuses.update((400, 413, 415))
        if any(p["in"] == "query" for p in doc.get("parameters", [])):
            statuses.add(400)
        responses = doc.setdefault("responses", {})
        for status in sorted(statuses):     # over flask-smorest's generic ones
            responses[status] = error_response_name(status)
        return doc


def _checking_content_type(view, accepts):
    """The view, answering 415 first to a body of a type it does not declare
    (an empty body is no body)."""
    @wraps(view)
    def checked(*args, **kwargs):
        has_body = request.content_length or "chunked" in request.headers.get("Transfer-Encoding", "")
        if has_body and request.mimetype not in accepts:
            raise ApiError(415, "unsupported_media_type", "send the body as %s" % " or ".join(accepts))
        return view(*args, **kwargs)
    return checked


SETTING = re.compile(r"\{([A-Z][A-Z0-9_]*)\}")


def _configured_descriptions(doc, doc_info, *, app, **kwargs):
    """An operation's description may name settings as {SETTING}: the document
    states this deployment's values, as the parameters' bounds do (other braces stay)."""
    docstring = doc_info.get("docstring") or {}
    if docstring.get("description"):
        docstring["description"] = SETTING.sub(lambda found: str(app.config.get(found.group(1), found.group(0))),
                                               docstring["description"])
    return doc
