"""The adapter's own error types."""


class RabbitMQBrokerError(RuntimeError):
    """RabbitMQ refused or did not confirm an operation within its timeout."""


class MessageTooLarge(RabbitMQBrokerError):
    """A message exceeds ``MAX_MESSAGE_BYTES``; sending it again cannot succeed."""


class ServerUnreachable(RabbitMQBrokerError):
    """No RabbitMQ node of ``URI`` answered within ``PING_TIMEOUT_MS``: the
    adapter has just tried, so trying again at once would only wait again."""


class CredentialsRefused(RabbitMQBrokerError):
    """RabbitMQ refused the user, password or virtual host of ``URI``;
    retrying cannot help until the settings or the server change."""


class PublishNotConfirmed(RabbitMQBrokerError):
    """RabbitMQ did not confirm a publish within ``PUBLISH_TIMEOUT_MS``, or
    refused it (a negative confirm, an unroutable message)."""


class PublishTimedOut(PublishNotConfirmed):
    """A publish waited out ``PUBLISH_TIMEOUT_MS``; its channel was closed so
    nothing still buffered goes out beside the caller's retry."""


class ExchangeMissing(PublishNotConfirmed):
    """A publish found no exchange where one was declared: deleted out of
    band. Nothing was routed, so declaring it again and resending is safe."""


class PublishRefused(PublishNotConfirmed):
    """RabbitMQ answered a publish with a negative confirm (a queue at its
    length limit refuses new messages): sending again at once is refused too,
    and would duplicate the message in the queues that took it."""
