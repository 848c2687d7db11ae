"""Periodic checks are paced per token so that their calls stay inside a share of the budget."""

from __future__ import annotations

from cftunnel_operator.reconcile.context import PeriodicAllowance


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_checks_beyond_the_share_of_the_budget_are_skipped_until_it_refills() -> None:
    clock = FakeClock()
    allowance = PeriodicAllowance(rate_limit=100, window_seconds=300, share=0.5, clock=clock)
    granted = sum(allowance.try_take("token", 2) for _ in range(1000))
    assert granted == 25  # 50 calls' worth, 2 calls per check
    clock.now = 150  # half a window refills half the share
    assert sum(allowance.try_take("token", 2) for _ in range(1000)) == 12


def test_calls_per_window_stay_within_the_share_however_many_objects_exist() -> None:
    clock = FakeClock()
    allowance = PeriodicAllowance(rate_limit=1000, window_seconds=300, share=0.5, clock=clock)
    calls = 0
    # 5,000 objects ticking every 30 s for ten windows.
    for tick in range(100):
        clock.now = tick * 30.0
        calls += 2 * sum(allowance.try_take("token", 2) for _ in range(5000))
    windows = 10
    assert calls <= 500 * windows + 500  # the share per window, plus the initial full bucket


def test_tokens_have_separate_allowances() -> None:
    allowance = PeriodicAllowance(rate_limit=10, window_seconds=300, share=0.5, clock=FakeClock())
    assert sum(allowance.try_take("a", 1) for _ in range(10)) == 5
    assert sum(allowance.try_take("b", 1) for _ in range(10)) == 5
