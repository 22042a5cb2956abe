"""The adapter's own error types: each says what went wrong and what to check."""


class SqsBrokerError(RuntimeError):
    """SQS refused an operation, or it did not finish in time."""


class MessageTooLarge(SqsBrokerError):
    """A message exceeds ``MAX_MESSAGE_BYTES`` (or what SQS accepts at all):
    sending it again cannot succeed."""


class CredentialsRefused(SqsBrokerError):
    """SQS refused the credentials boto3 found (or boto3 found none): retrying
    cannot help until the environment, the profile or the role changes."""


class PermissionRefused(SqsBrokerError):
    """SQS accepted the credentials but refused one action (``AccessDenied``):
    the role or user lacks that permission; retrying cannot help until its
    policy changes."""


class PublishFailed(SqsBrokerError):
    """Some copies of a message were not stored after the adapter's retries;
    publishing it again is safe for at-least-once consumers."""


class PublishTimedOut(PublishFailed):
    """A publish waited out the client's timeouts and retries: trying again at
    once doubles the caller's wait."""
