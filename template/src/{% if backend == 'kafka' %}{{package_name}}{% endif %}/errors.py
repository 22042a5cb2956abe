"""The adapter's own error types."""


class KafkaBrokerError(RuntimeError):
    """Kafka refused or did not confirm an operation within its timeout."""


class RecordTooLarge(KafkaBrokerError):
    """A record exceeds what the producer or the topic accepts; sending it
    again cannot succeed."""


class CredentialsRefused(KafkaBrokerError):
    """Kafka refused the adapter's credentials (a wrong SASL password, say);
    retrying cannot help until the settings or the cluster change."""


class ClusterUnreachable(KafkaBrokerError):
    """No Kafka broker answered, and none has since: an operation that can
    wait for a later call gave up at once rather than wait out its timeout."""


class PublishTimedOut(KafkaBrokerError):
    """A publish was not confirmed within ``PUBLISH_TIMEOUT_MS``, which
    librdkafka spent reconnecting and retrying; publishing again would double
    the caller's wait and, had the first write landed, write the message twice."""


class OutOfLocalResources(KafkaBrokerError):
    """This process ran out of something librdkafka needs to connect, such
    as open files: the cluster may be fine, this client cannot reach it."""


class TopicMissing(KafkaBrokerError):
    """A topic the adapter needs does not exist, and ``CREATE_TOPICS = false``
    forbids creating it: nothing changes until an operator creates it."""
