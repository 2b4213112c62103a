"""Marshmallow schemas for what the API takes and gives, and their bounds."""
