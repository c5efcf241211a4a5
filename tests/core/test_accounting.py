"""GPU-time accounting and credits (nsml.core.accounting), and the policy file that sets them."""

import math

import pytest

from nsml.core.accounting import DAY, CreditRule, Credits, Span, credit_balance, gpu_hours_by_day, next_refill
from nsml.core.errors import InvalidInput
from nsml.scheduler.policy_file import parse_policy

H = 3600.0


def test_gpu_hours_are_split_at_day_boundaries_and_charged_to_owner_and_team():
    d = 100 * DAY
    spans = [Span("alice", "vision", 2, d + 23 * H, d + 25 * H),  # 1 h on day 100, 1 h on day 101, 2 GPUs
             Span("bob", "", 1, d + 2 * H, None)]  # still running
    out = gpu_hours_by_day(spans, d, d + 26 * H)
    assert out["alice"] == {100: 2.0, 101: 2.0} and out["team:vision"] == {100: 2.0, 101: 2.0}
    assert out["bob"] == {100: 22.0, 101: 2.0} and set(out) == {"alice", "team:vision", "bob"}  # bob is in no team


def test_a_window_cuts_spans_and_cpu_only_spans_count_nothing():
    out = gpu_hours_by_day([Span("a", "", 4, 0.0, 10 * H), Span("a", "", 0, 0.0, 10 * H)], 5 * H, 7 * H)
    assert out == {"a": {0: 8.0}}


def test_a_new_holder_starts_full_and_uses_its_credit():
    rule = CreditRule(refill=600, cap=1200)
    now = 10 * DAY + 12 * H
    assert credit_balance([], rule, DAY, now) == 1200
    spans = [Span("a", "", 2, now - 2 * H, now - H)]  # 2 GPU-hours = 120 credits
    assert math.isclose(credit_balance(spans, rule, DAY, now), 1080)


def test_refills_come_each_period_up_to_the_cap_and_pay_back_a_debt_first():
    rule = CreditRule(refill=600, cap=1000)
    day = 50 * DAY
    spans = [Span("a", "", 8, day, day + 3 * H)]  # 1440 credits on day 50: from 1000 to -440
    assert math.isclose(credit_balance(spans, rule, DAY, day + 5 * H), -440)
    assert math.isclose(credit_balance(spans, rule, DAY, day + DAY + H), 160)  # +600
    assert math.isclose(credit_balance(spans, rule, DAY, day + 2 * DAY + H), 760)
    assert math.isclose(credit_balance(spans, rule, DAY, day + 5 * DAY), 1000)  # capped
    assert next_refill(DAY, day + 5 * H) == day + DAY


def test_a_running_span_is_charged_up_to_now():
    rule = CreditRule(refill=0, cap=600)
    assert math.isclose(credit_balance([Span("a", "", 1, 1000.0, None)], rule, DAY, 1000.0 + 30 * 60), 570)


@pytest.mark.parametrize("bad", [dict(refill=-1, cap=1), dict(refill=1, cap=math.inf), dict(refill=math.nan, cap=1)])
def test_a_credit_rule_is_finite_and_not_negative(bad):
    with pytest.raises(ValueError):
        CreditRule(**bad)


def test_the_policy_file_sets_every_knob():
    policy, credits = parse_policy({
        "order": "fair", "weights": {"alice": 2, "team:vision": 3}, "max_gpus": {"user:*": 8, "team:vision": 16},
        "reserve": False, "preempt": True, "place_by_end": False,
        "credits": {"period": "12h", "user:*": {"refill": 600, "cap": 1200}, "team:vision": {"refill": 100}}})
    assert policy.weight("alice") == 2 and policy.weight("bob") == 1 and policy.weight("team:vision") == 3
    assert policy.quota("carol") == 8 and policy.quota("team:vision") == 16 and policy.quota("team:nlp") is None
    assert policy.reserve is False and policy.place_by_end is False and credits.period == 12 * H and credits.enabled
    assert parse_policy({})[0].place_by_end is True
    assert credits.rule("bob") == CreditRule(600, 1200) and credits.rule("team:vision") == CreditRule(100, 100)
    assert credits.rule("team:nlp") is None
    assert parse_policy(None)[0].order == "fair" and not parse_policy({})[1].enabled and not Credits().enabled


@pytest.mark.parametrize("data, words", [
    ({"orders": "fair"}, "unknown key(s) orders"),
    ({"order": "random"}, "order must be one of fair, priority, fifo"),
    ({"weights": {"alice": 0}}, "weights.alice must be a positive number"),
    ({"weights": {"alice": "two"}}, "weights.alice must be a positive number"),
    ({"max_gpus": {"alice": 1.5}}, "max_gpus.alice is a whole number"),
    ({"max_gpus": {"user:bob": 1}}, "'user:bob' is not a user"),
    ({"max_gpus": {"a/b": 1}}, "'a/b' is not a user"),
    ({"reserve": "yes"}, "reserve is true or false"),
    ({"place_by_end": 1}, "place_by_end is true or false"),
    ({"credits": {"period": "forever"}}, "credits.period is a duration"),
    ({"credits": {"period": 0}}, "credits.period must be longer than 0"),
    ({"credits": {"alice": 5}}, "credits.alice is {refill: N, cap: M}"),
    ({"credits": {"alice": {"refill": 10, "cap": 5}}}, "cap (5) is below its refill (10)"),
    ({"credits": {"alice": {"refill": float("inf")}}}, "must be a non-negative number"),
    (["order"], "must be a mapping"),
])
def test_a_malformed_policy_is_one_clear_line(data, words):
    with pytest.raises(InvalidInput) as err:
        parse_policy(data, "policy.yaml")
    assert words in str(err.value) and str(err.value).startswith("policy.yaml")


def test_how_many_reservations_is_a_knob_and_checked():
    assert parse_policy({"reservations": 2})[0].reservations == 2 and parse_policy({})[0].reservations == 4
    for bad in (0, 65, True, "4"):
        with pytest.raises(InvalidInput, match="reservations is how many blocked sessions get one"):
            parse_policy({"reservations": bad})
