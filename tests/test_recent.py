"""What a worker trusts of what it read (app/services/recent.py), on an injected clock."""
from app.services.recent import MISSING, Recent


def test_a_value_is_trusted_for_its_age_from_before_its_read_and_none_is_a_value():
    now = [100.0]
    recent = Recent(clock=lambda: now[0])
    assert recent.get("t", 5) is MISSING
    reading = recent.reading()
    now[0] += 1.0                                   # the read took a second
    assert recent.put("t", None, reading) is None
    now[0] += 3.9
    assert recent.get("t", 5) is None               # an unknown token is remembered as unknown
    now[0] += 0.1
    assert recent.get("t", 5) is MISSING
    recent.put("t", 1, recent.reading())
    assert recent.get("t", 0) is MISSING            # 0: never trusted


def test_a_read_begun_before_a_forget_is_not_kept():
    recent = Recent()
    reading = recent.reading()                      # the old row is being read ...
    recent.forget(lambda key, value: key == "t")    # ... while a revocation commits
    assert recent.put("t", "old row", reading) == "old row"     # the caller still gets what it read
    assert recent.get("t", 60) is MISSING
    recent.put("t", "new row", recent.reading())
    assert recent.get("t", 60) == "new row"


def test_it_forgets_on_demand_and_stays_bounded():
    recent = Recent(max_entries=3)
    for key in "abc":
        recent.put(key, ord(key), recent.reading())
    recent.forget(lambda key, value: value == ord("b"))
    assert [recent.get(k, 60) for k in "abc"] == [ord("a"), MISSING, ord("c")]
    recent.put("d", 4, recent.reading())
    recent.put("e", 5, recent.reading())            # full: starts again
    assert [recent.get(k, 60) for k in "acde"] == [MISSING, MISSING, MISSING, 5]
    recent.forget()
    assert recent.get("e", 60) is MISSING
