"""What a worker trusts of what it read (app/services/recent.py), on an injected clock."""
from app.services.recent import MISSING, Recent


def test_a_value_is_trusted_for_its_age_and_none_is_a_value():
    now = [100.0]
    recent = Recent(clock=lambda: now[0])
    assert recent.get("t", 5) is MISSING
    assert recent.put("t", None) is None
    now[0] += 4.9
    assert recent.get("t", 5) is None               # an unknown token is remembered as unknown
    now[0] += 0.1
    assert recent.get("t", 5) is MISSING
    recent.put("t", 1)
    assert recent.get("t", 0) is MISSING            # 0: never trusted


def test_it_forgets_on_demand_and_stays_bounded():
    recent = Recent(max_entries=3)
    for key in "abc":
        recent.put(key, ord(key))
    recent.forget(lambda key, value: value == ord("b"))
    assert [recent.get(k, 60) for k in "abc"] == [ord("a"), MISSING, ord("c")]
    recent.put("d", 4)
    recent.put("e", 5)                              # full: starts again
    assert [recent.get(k, 60) for k in "acde"] == [MISSING, MISSING, MISSING, 5]
    recent.forget()
    assert recent.get("e", 60) is MISSING
