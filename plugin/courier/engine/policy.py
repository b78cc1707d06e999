"""Pure decisions about a task after a delivery attempt: retry when, and end in which state."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from courier.config.retry import RetryPolicy
from courier.store.records import FAILURE, PENDING, SUCCESS, WARNING


def retry_delay(policy: RetryPolicy, attempts_done: int) -> float:
    """Seconds to wait after the `attempts_done`-th failed attempt (1 -> initial delay)."""
    exponent = max(attempts_done - 1, 0)
    try:
        delay = policy.initial_delay * policy.multiplier ** exponent
    except OverflowError:
        delay = policy.max_delay
    return min(policy.max_delay, delay)


@dataclass(frozen=True)
class Outcome:
    state: str
    retry_in: Optional[float] = None      # seconds, when state is PENDING


def decide(expected: int, delivered: int, attempts_done: int, policy: RetryPolicy,
           retriable: bool = True) -> Outcome:
    """SUCCESS only when every expected instance was acknowledged; otherwise retry while
    attempts remain, then WARNING (some delivered) or FAILURE (none)."""
    if expected > 0 and delivered >= expected:
        return Outcome(SUCCESS)
    if retriable and attempts_done < policy.max_attempts:
        return Outcome(PENDING, retry_delay(policy, attempts_done))
    return Outcome(WARNING if delivered > 0 else FAILURE)
