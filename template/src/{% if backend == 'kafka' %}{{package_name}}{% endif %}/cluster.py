"""Cluster administration through one AdminClient, every call time-bounded.

Topics are created explicitly (clusters often run with
``auto.create.topics.enable=false``, and auto-created topics get whatever
defaults the cluster has); creation waits until the topic has leaders, so a
consumer that subscribes right after sees its partitions.

Calls that wait on a request serve the admin client's callbacks meanwhile, so
one that Kafka cannot answer because it refuses the credentials fails at once
with `CredentialsRefused` rather than after its timeout. Topic creation for a
caller that can leave it to a later call (``while_reachable``) gives up at once
with `ClusterUnreachable` while no broker answers.

Until a broker has answered this adapter instance once, every topic's first use
asks first whether one answers, within ``PING_TIMEOUT_MS``: a wrong address, a
stopped cluster or a listener of another protocol (TLS against plaintext, an
HTTP port) then fails that soon with `ClusterUnreachable`, naming the
addresses and what to check, instead of after a topic creation's timeout.
"""

import logging
import threading
import time
from concurrent.futures import Future, wait
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

from confluent_kafka import (
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicCollection,
    TopicPartition,
)

# confluent-kafka's admin package re-exports OffsetSpec without marking it
# public, and leaves its constructors unannotated (stub gaps).
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    OffsetSpec,
)
from confluent_kafka.cimpl import NewTopic

from .config import KafkaSettings
from .credentials import Credentials
from .errors import ClusterUnreachable, KafkaBrokerError, TopicMissing
from .reachability import Reachability

_LATEST: OffsetSpec = OffsetSpec.latest()  # type: ignore[no-untyped-call]
_EARLIEST: OffsetSpec = OffsetSpec.earliest()  # type: ignore[no-untyped-call]

logger = logging.getLogger(__name__)

_GRACE = 1.0
# What an admin request fails with when no broker answered it.
_UNANSWERED = frozenset(
    {
        KafkaError._TIMED_OUT,
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._RESOLVE,
        KafkaError._SSL,
        KafkaError._DESTROY,
    }
)
_VISIBLE_POLL = 0.05
# How long one wait for a request lasts before the credentials are checked.
_WAIT_SLICE = 0.05


@dataclass(frozen=True)
class GroupOffsets:
    """Committed and end offsets of one Kafka group on one topic."""

    committed: dict[int, int]
    end: dict[int, int]

    @property
    def lag(self) -> int:
        """Records at or after the committed offset (the whole partition when
        nothing is committed yet, counted from its start)."""
        return sum(self.end[p] - self.committed[p] for p in self.end)


class Cluster:
    """Topic creation/deletion, group deletion and offset queries."""

    def __init__(
        self,
        config: dict[str, Any],
        settings: KafkaSettings,
        credentials: Credentials,
        reachability: Reachability,
    ) -> None:
        self._admin_lock = threading.Lock()
        self._credentials = credentials
        self._reachability = reachability
        self._watched: dict[str, Any] = {**config, "error_cb": self._on_error}
        self._admin: AdminClient | None = AdminClient(self._watched)
        self._settings = settings
        self._timeout = settings.operation_timeout
        self._ready: set[str] = set()
        reachability.probe_with(self.probe)

    def _client(self) -> AdminClient:
        """The admin client, made again on first use after `close`."""
        with self._admin_lock:
            if self._admin is None:
                self._admin = AdminClient(self._watched)
            return self._admin

    def close(self) -> None:
        """Let the admin client go, so its librdkafka threads and connections
        end now. Its error callback refers back here, a cycle through a C
        object that the garbage collector never frees: without this, each
        closed broker would keep them until the interpreter exits."""
        with self._admin_lock:
            self._admin = None

    def _on_error(self, error: KafkaError) -> None:
        # librdkafka logs these itself and retries; refusals and outages are
        # told once by their watches.
        reported = self._credentials.report(error) or self._reachability.report(error)
        if not reported:
            logger.debug("Kafka admin client: %s", error)

    def _answer(
        self,
        future: Future[Any],
        timeout: float,
        while_reachable: bool = False,
        grace: float = _GRACE,
    ) -> Any:
        """The request's result, waiting at most ``timeout`` (+ grace) while
        serving the admin client's callbacks (nothing else polls it: its log
        lines and errors are forwarded here). Raises `CredentialsRefused` as
        soon as Kafka is known to refuse the credentials, `ClusterUnreachable`
        (``while_reachable``) as soon as no broker answers, ``FutureTimeout``
        when no answer came in time."""
        deadline = time.monotonic() + timeout + grace
        # Also when it is answered after this call gave up.
        future.add_done_callback(self._on_answer)
        admin = self._client()
        while True:
            admin.poll(0)
            if future.done():
                return future.result()  # raises what Kafka answered
            refused = self._credentials.refusal()
            if refused is not None:
                raise refused
            if while_reachable and self._reachability.down:
                raise ClusterUnreachable(
                    f"no Kafka broker answers {self._settings.bootstrap_servers}"
                )
            left = deadline - time.monotonic()
            if left <= 0:
                refused = self._credentials.last_refusal()
                if refused is not None:
                    raise refused
                raise FutureTimeout
            wait([future], timeout=min(left, _WAIT_SLICE))

    def _on_answer(self, future: Future[Any]) -> None:
        if not future.cancelled() and future.exception() is None:
            self._credentials.accepted()
            self._reachability.answered()

    def probe(self) -> Future[Any]:
        """Ask for the cluster's description, without waiting for it; an
        answer tells the watches that Kafka answers."""
        future: Future[Any] = self._client().describe_cluster(
            request_timeout=self._settings.ping_timeout
        )
        future.add_done_callback(self._on_answer)
        return future

    def first_contact(self, timeout: float | None = None) -> None:
        """Until a broker has answered this instance once, ask whether one
        does, within ``PING_TIMEOUT_MS`` (or ``timeout``, if shorter), and
        raise `ClusterUnreachable` naming what to check if none does. The
        outage is logged once; while it lasts this raises at once, and the
        reachability watch asks again in the background."""
        reachability = self._reachability
        if reachability.heard:
            return
        if reachability.down:
            reachability.check()
            raise self._unreachable("has answered yet")
        wait_for = self._settings.ping_timeout
        if timeout is not None:
            wait_for = min(wait_for, timeout)
        future = self._client().describe_cluster(request_timeout=wait_for)
        try:
            self._answer(future, wait_for, grace=0.5)
        except FutureTimeout:
            reason = "timed out"
        except KafkaException as exc:
            if _code(exc) not in _UNANSWERED:
                reachability.answered()  # a broker answered, with an error
                return
            code = _code(exc)
            reason = "timed out" if code == KafkaError._TIMED_OUT else str(exc)
        else:
            return
        if reachability.heard:  # another client heard from a broker meanwhile
            return
        reachability.unanswered(reason)
        raise self._unreachable(f"answered within {wait_for:g}s")

    def _unreachable(self, what: str) -> ClusterUnreachable:
        reason = self._reachability.reason
        return ClusterUnreachable(
            f"Kafka is unreachable: no broker of BOOTSTRAP_SERVERS="
            f"{self._settings.bootstrap_servers} {what}"
            + (f" (librdkafka: {reason})" if reason else "")
            + f". {self._reachability.advice()}"
        )

    def _metadata(self, topic: str | None, timeout: float) -> Any:
        """``list_topics``, which blocks: asked only while the credentials are
        not known to be refused."""
        admin = self._client()
        admin.poll(0)
        refused = self._credentials.refusal()
        if refused is not None:
            raise refused
        if topic is None:
            return admin.list_topics(timeout=timeout)
        return admin.list_topics(topic=topic, timeout=timeout)

    def _result(
        self,
        future: Future[Any],
        what: str,
        timeout: float | None = None,
        while_reachable: bool = False,
    ) -> Any:
        timeout = self._timeout if timeout is None else timeout
        try:
            return self._answer(future, timeout, while_reachable)
        except FutureTimeout:
            raise KafkaBrokerError(
                f"Kafka did not answer {what} within {timeout:g}s (timed out)"
            ) from None

    def ensure_topic(
        self,
        topic: str,
        compacted: bool = False,
        timeout: float | None = None,
        while_reachable: bool = False,
    ) -> None:
        """Create ``topic`` unless it is known to exist (idempotent, cached).

        ``timeout`` (default ``OPERATION_TIMEOUT_MS``) bounds the whole call, so
        a caller's own timeout holds against an unreachable cluster; with
        ``while_reachable`` it raises `ClusterUnreachable` as soon as no broker
        answers, for callers that leave the topic to a later call. Creating
        twice at once is harmless (the loser sees "already exists"), so no lock
        makes one topic's creation wait for another's.
        """
        if topic in self._ready:
            return
        self.first_contact(timeout)
        if not self._settings.create_topics:
            return
        self._client().poll(0)  # learn of an outage the clients already reported
        if while_reachable and self._reachability.down:
            raise ClusterUnreachable(
                f"no Kafka broker answers {self._settings.bootstrap_servers}"
            )
        timeout = self._timeout if timeout is None else min(timeout, self._timeout)
        deadline = time.monotonic() + timeout
        config = dict(self._settings.topic_config)
        if compacted:
            config["cleanup.policy"] = "compact"
        new_topic = NewTopic(
            topic,
            num_partitions=self._settings.topic_partitions,
            replication_factor=self._settings.topic_replication_factor,
            config=config,
        )
        futures = self._client().create_topics(
            [new_topic], operation_timeout=timeout, request_timeout=timeout
        )
        try:
            self._result(
                futures[topic], f"creating topic {topic!r}", timeout, while_reachable
            )
        except KafkaException as exc:
            if _code(exc) != KafkaError.TOPIC_ALREADY_EXISTS:
                raise KafkaBrokerError(
                    f"Kafka could not create topic {topic!r}: {exc}"
                ) from exc
        self._wait_until_led(topic, deadline)
        self._ready.add(topic)

    def require_topic(self, topic: str, compacted: bool = False) -> None:
        """Create ``topic``, or with ``CREATE_TOPICS = false`` make sure it
        exists: raise `TopicMissing` at once, rather than let a write to it
        wait out ``PUBLISH_TIMEOUT_MS`` for a topic nobody creates."""
        if topic in self._ready:
            return
        if self._settings.create_topics:
            self.ensure_topic(topic, compacted=compacted)
            return
        self.first_contact()
        if not self.partitions(topic):
            kind = " (cleanup.policy=compact)" if compacted else ""
            raise TopicMissing(
                f"topic {topic!r} does not exist and CREATE_TOPICS = false: "
                f"create it{kind} or set CREATE_TOPICS = true"
            )
        self._ready.add(topic)

    def forget_topic(self, topic: str) -> None:
        """Check ``topic`` with the cluster again at its next use: a write to
        it found it unknown or timed out, as after someone else deleted it.
        The next `ensure_topic` or `require_topic` creates it again (or raises
        `TopicMissing`), rather than every later write waiting out its timeout."""
        self._ready.discard(topic)

    def _wait_until_led(self, topic: str, deadline: float) -> None:
        while True:
            left = max(0.0, deadline - time.monotonic())
            metadata = self._metadata(topic, left)
            found = metadata.topics.get(topic)
            if (
                found is not None
                and found.error is None
                and found.partitions
                and all(p.leader >= 0 for p in found.partitions.values())
            ):
                return
            if time.monotonic() >= deadline:
                raise KafkaBrokerError(f"topic {topic!r} has no leader (timed out)")
            time.sleep(_VISIBLE_POLL)

    def topic_names(self) -> set[str]:
        return set(self._metadata(None, self._timeout).topics)

    def partitions(self, topic: str) -> list[int]:
        found = self._metadata(topic, self._timeout).topics.get(topic)
        if found is None or found.error is not None:
            return []
        return sorted(found.partitions)

    def topic_id(self, topic: str) -> str | None:
        """The topic's id (None: no such topic). A topic deleted and created
        again under the same name has a new one."""
        futures = self._client().describe_topics(
            TopicCollection([topic]), request_timeout=self._timeout
        )
        try:
            found = self._result(futures[topic], f"describing topic {topic!r}")
        except KafkaException as exc:
            if _code(exc) == KafkaError.UNKNOWN_TOPIC_OR_PART:
                return None
            raise
        return str(found.topic_id)

    def describe(self, timeout: float) -> tuple[str | None, list[str]]:
        """Cluster id and the brokers that answered, within ``timeout``."""
        future = self._client().describe_cluster(request_timeout=timeout)
        try:
            result = self._answer(future, timeout)
        except FutureTimeout:
            raise KafkaBrokerError(
                f"no Kafka broker answered within {timeout:g}s"
            ) from None
        brokers = [f"{node.host}:{node.port}" for node in result.nodes]
        return result.cluster_id, brokers

    def group_offsets(self, group_id: str, topic: str) -> GroupOffsets:
        """Where ``group_id`` stands on ``topic`` versus the end of each partition."""
        parts = [TopicPartition(topic, p) for p in self.partitions(topic)]
        if not parts:
            return GroupOffsets({}, {})
        request = [ConsumerGroupTopicPartitions(group_id, parts)]
        listed = self._client().list_consumer_group_offsets(
            request, request_timeout=self._timeout
        )
        committed = {
            tp.partition: tp.offset
            for tp in self._result(listed[group_id], "group offsets").topic_partitions
        }
        end = self.end_offsets(parts)
        uncommitted = [tp for tp in parts if committed.get(tp.partition, -1) < 0]
        start = self.start_offsets(uncommitted)
        return GroupOffsets(
            {p: committed[p] if committed.get(p, -1) >= 0 else start[p] for p in end},
            end,
        )

    def end_offsets(self, parts: list[TopicPartition]) -> dict[int, int]:
        """The offset the next record of each partition will get.

        Asked through the admin connection: a consumer's own connection queues
        the request behind its long-poll fetch (up to ``fetch.wait.max.ms``).
        """
        return self._list_offsets(parts, _LATEST)

    def start_offsets(self, parts: list[TopicPartition]) -> dict[int, int]:
        """The oldest offset still stored in each partition."""
        return self._list_offsets(parts, _EARLIEST)

    def _list_offsets(
        self, parts: list[TopicPartition], spec: OffsetSpec
    ) -> dict[int, int]:
        if not parts:
            return {}
        futures = self._client().list_offsets(
            {tp: spec for tp in parts}, request_timeout=self._timeout
        )
        return {
            tp.partition: self._result(future, "partition offsets").offset
            for tp, future in futures.items()
        }

    def group_members(self, group_ids: list[str]) -> dict[str, list[str]]:
        """Client ids of the live members of each group (any process)."""
        if not group_ids:
            return {}
        futures = self._client().describe_consumer_groups(
            group_ids, request_timeout=self._timeout
        )
        members: dict[str, list[str]] = {}
        for group_id, future in futures.items():
            try:
                description = self._result(future, f"group {group_id!r}")
            except (KafkaException, KafkaBrokerError) as exc:
                logger.debug("Could not describe group %s: %s", group_id, exc)
                continue
            members[group_id] = sorted(m.client_id for m in description.members)
        return members

    def delete_topics(self, topics: list[str]) -> None:
        """Delete topics; a missing topic is not an error. Never raises.

        Kafka deletes asynchronously: like creation, which waits until a topic
        is led, this waits until the cluster no longer lists the topics, so a
        topic of the same name can be created again as soon as it returns.
        """
        self._ready.difference_update(topics)
        if topics:
            futures = self._client().delete_topics(
                topics, operation_timeout=self._timeout, request_timeout=self._timeout
            )
            self._settle(futures, KafkaError.UNKNOWN_TOPIC_OR_PART, "delete topic")
            self._wait_until_gone(set(topics), time.monotonic() + self._timeout)

    def _wait_until_gone(self, topics: set[str], deadline: float) -> None:
        while True:
            left = max(0.0, deadline - time.monotonic())
            try:
                listed = topics & set(self._metadata(None, left).topics)
            except (KafkaException, KafkaBrokerError) as exc:
                logger.warning("Could not list topics after deleting them: %s", exc)
                return
            if not listed:
                return
            if time.monotonic() >= deadline:
                logger.warning("Still listed after deletion: %s", sorted(listed))
                return
            time.sleep(_VISIBLE_POLL)

    def delete_groups(self, group_ids: list[str]) -> None:
        """Delete consumer groups; a missing group is not an error. Never raises."""
        if group_ids:
            futures = self._client().delete_consumer_groups(
                group_ids, request_timeout=self._timeout
            )
            self._settle(futures, KafkaError.GROUP_ID_NOT_FOUND, "delete group")

    def _settle(self, futures: dict[str, Future[Any]], absent: int, what: str) -> None:
        for name, future in futures.items():
            try:
                self._result(future, f"{what} {name!r}")
            except KafkaException as exc:
                if _code(exc) != absent:
                    logger.warning("Could not %s %s: %s", what, name, exc)
            except KafkaBrokerError as exc:
                logger.warning("%s", exc)


def _code(exc: KafkaException) -> int | None:
    error = exc.args[0] if exc.args else None
    return error.code() if isinstance(error, KafkaError) else None
