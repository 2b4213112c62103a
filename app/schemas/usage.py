"""What GET /api/usage takes (a user, a range of UTC days, bounded) and gives."""
from datetime import date, datetime, timedelta, timezone

from marshmallow import RAISE, Schema, ValidationError, fields, post_load, validate

DAYS_DEFAULT = 30       # `since`, unless given: this many days before `until`
DAYS_MAX = 366          # days in one reply
EPOCH = date(1970, 1, 1)


class UsageQuerySchema(Schema):
    class Meta:
        unknown = RAISE

    user = fields.String(validate=validate.Length(min=1, max=64), metadata={
        "description": "whose usage (default: the caller's; another user's: admins only)"})
    since = fields.Date(metadata={"description": "the first UTC day (default: %d days before `until`)"
                                                 % DAYS_DEFAULT})
    until = fields.Date(metadata={"description": "the last UTC day, included (default: today)"})

    @post_load
    def _range(self, data, **kwargs):
        for name in ("since", "until"):
            if name in data and data[name] < EPOCH:
                raise ValidationError("Must not be before %s." % EPOCH, name)
        until = data.setdefault("until", datetime.now(timezone.utc).date())
        since = data.setdefault("since", until - timedelta(days=DAYS_DEFAULT))
        if since > until:
            raise ValidationError("Must not be after until (today by default).", "since")
        if (until - since).days >= DAYS_MAX:
            raise ValidationError("At most %d days at once." % DAYS_MAX, "since")
        return data


class DayUsageSchema(Schema):
    day = fields.String(metadata={"description": "YYYY-MM-DD (UTC)"})
    session_hours = fields.Float(metadata={"description": "sessions' time, split exactly at UTC midnight"})
    cpu_seconds = fields.Float(metadata={"description": "each session's CPU in proportion to its time that day"})
    memory_peak_bytes = fields.Integer(allow_none=True, metadata={
        "description": "the largest peak of a session that day"})


class UsageTotalsSchema(Schema):
    session_hours = fields.Float()
    cpu_seconds = fields.Float()
    memory_peak_bytes = fields.Integer(allow_none=True)


class UsageReportSchema(Schema):
    user = fields.String()
    since = fields.String(metadata={"description": "YYYY-MM-DD"})
    until = fields.String(metadata={"description": "YYYY-MM-DD"})
    days = fields.List(fields.Nested(DayUsageSchema), metadata={"description": "days with sessions, oldest first"})
    totals = fields.Nested(UsageTotalsSchema)
