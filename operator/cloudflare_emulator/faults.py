"""Injected faults for API requests: latency, 5xx answers, 429 bursts, dropped connections.

Faults are configured through the admin API and never touch ``/__emulator``. They may be
limited to one account (requests whose path names it, or whose token belongs to it) and to a
list of operation names. Random faults draw from a seedable generator so a test can replay
the same sequence.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["FaultConfig", "FaultDecision", "FaultInjector"]

ERROR_STATUSES = (500, 502, 503)


@dataclass
class FaultConfig:
    latency_ms: float = 0.0
    error_rate: float = 0.0
    error_status: int = 503
    error_burst: int = 0
    rate_limit_burst: int = 0
    retry_after: int = 1
    drop_rate: float = 0.0
    account_id: str | None = None
    operations: list[str] | None = None
    seed: int | None = None

    @classmethod
    def from_json(cls, data: Any) -> FaultConfig:
        """Build from the admin request body; raise ValueError naming the bad field."""
        if not isinstance(data, dict):
            raise ValueError("faults must be a JSON object")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown fault settings: {', '.join(unknown)}")
        config = cls(**data)
        config._check()
        return config

    def _check(self) -> None:
        def number(name: str, value: Any) -> float:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{name} must be a number")
            return float(value)

        def count(name: str, value: Any) -> int:
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer")
            return value

        if number("latency_ms", self.latency_ms) < 0:
            raise ValueError("latency_ms must be >= 0")
        for name in ("error_rate", "drop_rate"):
            if not 0.0 <= number(name, getattr(self, name)) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        if self.error_status not in ERROR_STATUSES:
            raise ValueError("error_status must be 500, 502 or 503")
        count("error_burst", self.error_burst)
        count("rate_limit_burst", self.rate_limit_burst)
        if count("retry_after", self.retry_after) < 1:
            raise ValueError("retry_after must be at least 1")
        if self.account_id is not None and not isinstance(self.account_id, str):
            raise ValueError("account_id must be a string")
        if self.operations is not None and (
            not isinstance(self.operations, list)
            or not all(isinstance(op, str) for op in self.operations)
        ):
            raise ValueError("operations must be a list of operation names")
        if self.seed is not None and (
            isinstance(self.seed, bool) or not isinstance(self.seed, int)
        ):
            raise ValueError("seed must be an integer")

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


@dataclass(frozen=True)
class FaultDecision:
    latency_seconds: float = 0.0
    action: Literal["none", "drop", "error", "throttle"] = "none"
    status: int = 0
    retry_after: int = 0


NO_FAULT = FaultDecision()


@dataclass
class FaultInjector:
    config: FaultConfig = field(default_factory=FaultConfig)
    _random: random.Random = field(default_factory=random.Random)

    def configure(self, config: FaultConfig) -> None:
        self.config = config
        self._random = random.Random(config.seed)

    def clear(self) -> None:
        self.configure(FaultConfig())

    def decide(self, operation: str, account_ids: Iterable[str]) -> FaultDecision:
        config = self.config
        if config.account_id is not None and config.account_id not in set(account_ids):
            return NO_FAULT
        if config.operations is not None and operation not in config.operations:
            return NO_FAULT
        latency = config.latency_ms / 1000.0
        # Order matters: a dropped connection never answers, so it wins over an answer.
        if config.drop_rate and self._random.random() < config.drop_rate:
            return FaultDecision(latency, "drop")
        if config.rate_limit_burst > 0:
            config.rate_limit_burst -= 1
            return FaultDecision(latency, "throttle", 429, config.retry_after)
        if config.error_burst > 0:
            config.error_burst -= 1
            return FaultDecision(latency, "error", config.error_status)
        if config.error_rate and self._random.random() < config.error_rate:
            return FaultDecision(latency, "error", config.error_status)
        return FaultDecision(latency) if latency else NO_FAULT
