"""Bounds a field takes from the running configuration.

A bound is a number or the name of a setting. Validation reads the setting of
the app serving the request; the OpenAPI document reads the same setting of
the app it describes (`properties`), so what is enforced is what is
documented, with this deployment's values.
"""
from flask import current_app
from marshmallow import ValidationError, validate


def _resolve(bound, config):
    return config[bound] if isinstance(bound, str) else bound


class Between(validate.Validator):
    """low <= value <= high. (Not named min/max: apispec would read those raw.)"""

    def __init__(self, low, high, unit=""):
        self.low, self.high, self.unit = low, high, unit

    def bounds(self, config):
        return _resolve(self.low, config), _resolve(self.high, config)

    def __call__(self, value):
        low, high = self.bounds(current_app.config)
        if not low <= value <= high:
            raise ValidationError("Must be between %s and %s%s." % (low, high, self.unit))
        return value


class AtMostChars(validate.Validator):
    def __init__(self, limit):
        self.limit = limit

    def __call__(self, value):
        limit = _resolve(self.limit, current_app.config)
        if len(value) > limit:
            raise ValidationError("Longer than %d characters." % limit)
        return value


def properties_from(config):
    """An apispec attribute function writing these bounds with `config`'s values."""
    def configured_bounds(converter, field, **kwargs):
        props = {}
        for validator in field.validators:
            if isinstance(validator, Between):
                props["minimum"], props["maximum"] = validator.bounds(config)
            elif isinstance(validator, AtMostChars):
                props["maxLength"] = _resolve(validator.limit, config)
            elif isinstance(validator, _PartOf):
                said = field.metadata.get("description")
                props["description"] = "; ".join(filter(None, (said, validator.bound.describe(config))))
        return props
    return configured_bounds


class RenderedPixels:
    """A bound over a render's three fields: the pixels ChimeraX draws,
    width x height x supersample² (its `save` draws the image supersample² times,
    each with a pixel shift), at most `limit`. Each field carries `part` (which
    checks nothing alone) so that the document states the bound on each of them;
    the schema checks it once all three are valid (`check`)."""

    def __init__(self, limit):
        self.limit = limit
        self.part = _PartOf(self)

    def limit_in(self, config):
        return _resolve(self.limit, config)

    def _stated(self, config):
        value = self.limit_in(config)
        return "%s (%d)" % (self.limit, value) if isinstance(self.limit, str) else "%d" % value

    def describe(self, config):
        return "width × height × supersample² (the pixels drawn) at most %s" % self._stated(config)

    def check(self, width, height, supersample):
        drawn = width * height * supersample ** 2
        if drawn > self.limit_in(current_app.config):
            message = ("width × height × supersample² is %d × %d × %d² = %d pixels drawn, over %s: lower "
                       "the size or the supersampling" % (width, height, supersample, drawn,
                                                          self._stated(current_app.config)))
            raise ValidationError({name: [message] for name in ("width", "height", "supersample")})


class _PartOf(validate.Validator):
    def __init__(self, bound):
        self.bound = bound

    def __call__(self, value):
        return value
