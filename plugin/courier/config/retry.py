"""The "Courier.Retry" section: how often and how long a failed task is tried again."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from courier.config.reader import Section
from courier.errors import ConfigError


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 20
    initial_delay: float = 10.0
    multiplier: float = 2.0
    max_delay: float = 1800.0


def parse_retry(raw: Any) -> RetryPolicy:
    section = Section(raw, "Courier.Retry", "Courier.Retry")
    d = RetryPolicy()
    policy = RetryPolicy(
        max_attempts=section.positive("MaxAttempts", int, d.max_attempts),
        initial_delay=float(section.positive("InitialDelaySeconds", float, d.initial_delay)),
        multiplier=float(section.get("Multiplier", float, d.multiplier)),
        max_delay=float(section.positive("MaxDelaySeconds", float, d.max_delay)))
    if policy.multiplier < 1:
        raise ConfigError("Courier.Retry.Multiplier", f"must be at least 1, got {policy.multiplier}")
    return policy
