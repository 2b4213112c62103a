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
        return props
    return configured_bounds
