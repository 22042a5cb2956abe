"""Where Protean's own brokers fall short of this suite, shared by several tests.

See `conftest.py` for what the markers mean: for your broker they change nothing.
"""

from __future__ import annotations

import pytest

INLINE_SPLITS_GROUP_KEYS = pytest.mark.protean_defect(
    "inline",
    reason="InlineBroker keys its groups `stream:group` and splits them at the "
    "first `:`, so for streams with `::` in their names (Protean's own) it loses "
    "track of groups, their counts and their dead letters",
)
REDIS_REDELIVERS_PENDING = pytest.mark.beyond_protean(
    "redis",
    reason="RedisBroker's `read` first re-reads its consumer's own pending list, "
    "so an unacked message comes back on the next read while its handler may "
    "still be working on it; the suite asks that only a nack or a timeout hand "
    "it out again",
)
REDIS_NEVER_DEAD_LETTERS = pytest.mark.beyond_protean(
    "redis",
    reason="RedisBroker never dead-letters by itself (from 0.18 Protean's engine "
    "counts retries for its own subscriptions); the suite asks a broker that "
    "declares DEAD_LETTER_QUEUE to park a message after max_retries for every "
    "other group",
)
PENDING_IS_THE_BACKLOG = pytest.mark.beyond_protean(
    "inline",
    "redis",
    reason="`protean subscriptions` and the Observatory show a broker "
    "subscription's `pending` as its lag and call it lagging above 0, so it must "
    "count what the group has not finished, undelivered or unacked; InlineBroker "
    "reports no `pending`, RedisBroker's counts only delivered, unacked messages",
)
REDIS_SPLITS_GROUP_KEYS = pytest.mark.protean_defect(
    "redis",
    before="0.17",
    reason="RedisBroker before 0.17 recovers the stream of a `stream:group` key "
    "by splitting at the first `:`, so streams with `::` in their names are "
    "reported under a wrong name and their groups go missing",
)
