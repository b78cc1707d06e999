"""Pure retry decisions: backoff and the state after an attempt."""
import pytest

from courier.config.retry import RetryPolicy
from courier.engine.policy import decide, retry_delay
from courier.store.records import FAILURE, PENDING, SUCCESS, WARNING

POLICY = RetryPolicy(max_attempts=4, initial_delay=10, multiplier=3, max_delay=60)


def test_backoff_grows_exponentially_up_to_the_cap():
    assert [retry_delay(POLICY, n) for n in range(1, 6)] == [10, 30, 60, 60, 60]
    assert retry_delay(RetryPolicy(max_attempts=5, initial_delay=1, multiplier=10, max_delay=5), 10**6) == 5


@pytest.mark.parametrize("expected,delivered,attempts,state", [
    (3, 3, 1, SUCCESS), (3, 2, 1, PENDING), (3, 0, 3, PENDING),
    (3, 2, 4, WARNING), (3, 0, 4, FAILURE), (0, 0, 4, FAILURE),
])
def test_outcome(expected, delivered, attempts, state):
    outcome = decide(expected, delivered, attempts, POLICY)
    assert outcome.state == state
    assert (outcome.retry_in is not None) == (state == PENDING)


def test_non_retriable_errors_end_at_once():
    assert decide(2, 0, 1, POLICY, retriable=False).state == FAILURE
    assert decide(0, 0, 1, POLICY, retriable=False).state == FAILURE       # e.g. the resource has no instances


def test_a_failure_before_anything_is_known_is_retried():
    """A source down on the first fetch: nothing expected yet, but retrying can help."""
    assert decide(0, 0, 1, POLICY).state == PENDING
