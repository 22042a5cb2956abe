"""The SQS calls the adapter makes, through one thread-safe boto3 client.

Queue URLs are looked up once and kept; a queue deleted out of band raises
``QueueDoesNotExist`` at its next use, which drops the URL so the caller can
create the queue again. Errors are sorted here into what callers act on:
refused credentials, a timed-out call, everything else.
"""

import logging
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import boto3
import botocore.exceptions
from botocore.config import Config

from .config import SqsSettings
from .errors import CredentialsRefused, PermissionRefused

if TYPE_CHECKING:
    from types_boto3_sqs.client import SQSClient
    from types_boto3_sqs.literals import QueueAttributeNameType
    from types_boto3_sqs.type_defs import (
        MessageAttributeValueTypeDef,
        MessageTypeDef,
        SendMessageBatchRequestEntryTypeDef,
    )
else:
    SQSClient = Any
    MessageAttributeValueTypeDef = dict
    MessageTypeDef = dict
    QueueAttributeNameType = str
    SendMessageBatchRequestEntryTypeDef = dict

logger = logging.getLogger(__name__)

ID_ATTRIBUTE = "protean-id"
BATCH = 10  # SQS's most entries per batch call and messages per receive
LONGEST_POLL = 20  # seconds


def protean_id(message: "MessageTypeDef") -> str | None:
    """The identifier the adapter gave a message at publish, if it has one."""
    value = message.get("MessageAttributes", {}).get(ID_ATTRIBUTE)
    return None if value is None else value.get("StringValue")


def attributes_to_resend(
    message: "MessageTypeDef",
) -> dict[str, "MessageAttributeValueTypeDef"]:
    """A received message's attributes in the shape a send takes, so a copy
    keeps every one of them, whoever wrote it."""
    kept: dict[str, MessageAttributeValueTypeDef] = {}
    for name, value in message.get("MessageAttributes", {}).items():
        attribute: MessageAttributeValueTypeDef = {"DataType": value["DataType"]}
        if "StringValue" in value:
            attribute["StringValue"] = value["StringValue"]
        if "BinaryValue" in value:
            attribute["BinaryValue"] = value["BinaryValue"]
        kept[name] = attribute
    return kept


def make_client(
    settings: SqsSettings, read_timeout: float, attempts: int = 3
) -> SQSClient:
    """A client on boto3's credential chain; it never connects by itself.
    Calls wait up to ``read_timeout`` for an answer, and are made ``attempts``
    times at most (the first and its retries)."""
    config = Config(
        connect_timeout=settings.connect_timeout,
        read_timeout=read_timeout,
        retries={"mode": "standard", "total_max_attempts": attempts},
        max_pool_connections=20,
    )
    session = boto3.session.Session(region_name=settings.region)
    if session.region_name is None:
        from protean.exceptions import ConfigurationError

        raise ConfigurationError(
            "REGION is not set and boto3 found no region (AWS_REGION, "
            "AWS_DEFAULT_REGION or the profile): set one of them"
        )
    return session.client("sqs", endpoint_url=settings.endpoint_url, config=config)


# What SQS (or AWS's front end) answers for credentials it does not take.
CREDENTIAL_CODES = frozenset(
    {
        "InvalidClientTokenId",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "IncompleteSignature",
        "MissingAuthenticationToken",
        "UnrecognizedClientException",
        "ExpiredToken",
        "ExpiredTokenException",
        "RequestExpired",
    }
)
# Credentials taken, one action refused by the IAM policy.
DENIED_CODES = frozenset({"AccessDenied", "AccessDeniedException"})
# The IAM action each call needs, where it is not ``sqs:`` and the call's name.
_ACTIONS = {
    "SendMessageBatch": "SendMessage",
    "DeleteMessageBatch": "DeleteMessage",
    "ChangeMessageVisibilityBatch": "ChangeMessageVisibility",
}


def error_code(exc: BaseException) -> str:
    if isinstance(exc, botocore.exceptions.ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def refused_credentials(exc: BaseException) -> bool:
    """Whether SQS refused the credentials (or boto3 found none)."""
    if isinstance(exc, botocore.exceptions.NoCredentialsError):
        return True
    return error_code(exc) in CREDENTIAL_CODES


def action_of(exc: BaseException) -> str:
    """The IAM action of the call that failed, e.g. ``sqs:CreateQueue``."""
    operation = getattr(exc, "operation_name", "") or "an SQS call"
    return f"sqs:{_ACTIONS.get(operation, operation)}"


def timed_out(exc: BaseException) -> bool:
    return isinstance(
        exc,
        botocore.exceptions.ReadTimeoutError | botocore.exceptions.ConnectTimeoutError,
    )


def unreachable(exc: BaseException) -> bool:
    """A connection that failed or broke: Protean's recovery may retry."""
    return isinstance(
        exc,
        botocore.exceptions.EndpointConnectionError
        | botocore.exceptions.ConnectionClosedError
        | botocore.exceptions.ConnectTimeoutError,
    )


def explain(exc: BaseException, settings: SqsSettings) -> Exception:
    """An error that says what to check, for refused credentials or a refused
    permission; else ``exc``. ``AccessDenied`` comes from SQS once it took the
    credentials: the IAM policy lacks the action (or the keys are another
    account's), so it names the action."""
    if refused_credentials(exc):
        return CredentialsRefused(
            f"SQS refused the credentials boto3 found ({exc}); check "
            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or the role, "
            f"and the region ({settings.region or 'from the environment'})"
        )
    if error_code(exc) in DENIED_CODES:
        action = action_of(exc)
        tagging = " and sqs:TagQueue (queues are made with tags)"
        scope = (
            'on "*" (it takes no queue ARN)'
            if action == "sqs:ListQueues"
            else f"on queues named {settings.queue_prefix}*"
        )
        return PermissionRefused(
            f"SQS refused {action} ({exc}): the role or user needs {action}"
            f"{tagging if action == 'sqs:CreateQueue' else ''} {scope} (the "
            "README lists every action the adapter calls), or the credentials "
            "are another account's"
        )
    return exc if isinstance(exc, Exception) else RuntimeError(str(exc))


def entry_bytes(entry: "SendMessageBatchRequestEntryTypeDef") -> int:
    """What SQS counts of an entry toward the size limit: its body, and each
    attribute's name, data type and value."""
    size = len(entry["MessageBody"].encode())
    for name, value in entry.get("MessageAttributes", {}).items():
        size += len(name.encode()) + len(value["DataType"].encode())
        text, blob = value.get("StringValue"), value.get("BinaryValue")
        if text is not None:
            size += len(text.encode())
        elif isinstance(blob, bytes | bytearray):
            size += len(blob)
    return size


def batches(
    entries: Sequence["SendMessageBatchRequestEntryTypeDef"], limit: int
) -> list[list["SendMessageBatchRequestEntryTypeDef"]]:
    """``entries`` in order, cut into batches of at most `BATCH` entries and
    ``limit`` bytes in all (an entry larger than that alone)."""
    out: list[list[SendMessageBatchRequestEntryTypeDef]] = []
    size = 0
    for entry in entries:
        grows = entry_bytes(entry)
        if not out or len(out[-1]) == BATCH or size + grows > limit:
            out.append([])
            size = 0
        out[-1].append(entry)
        size += grows
    return out


class Queues:
    """Queue URLs by name, and the calls made on them."""

    def __init__(
        self, client: SQSClient, settings: SqsSettings, poller: SQSClient | None = None
    ) -> None:
        self.client = client
        # Receives wait on their own client, whose read timeout outlasts a
        # long poll; ``client`` gives up sooner on everything else.
        self.poller = client if poller is None else poller
        self.settings = settings
        self._urls: dict[str, str] = {}

    def close(self) -> None:
        self.client.close()
        if self.poller is not self.client:
            self.poller.close()

    def forget(self, name: str | None = None) -> None:
        if name is None:
            self._urls.clear()
        else:
            self._urls.pop(name, None)

    def _raised(self, exc: BaseException, *codes: str) -> bool:
        """Whether ``exc`` is one of SQS's modelled errors ``codes``, from
        either client (each client has exception classes of its own)."""
        return any(
            isinstance(exc, getattr(client.exceptions, code))
            for client in (self.client, self.poller)
            for code in codes
        )

    def missing(self, exc: BaseException) -> bool:
        return self._raised(exc, "QueueDoesNotExist")

    def stale(self, exc: BaseException) -> bool:
        """Whether SQS refused a receipt handle because the delivery is over
        (deleted, expired, handed to another reader) or its queue is gone:
        not a call to try again."""
        codes = ("ReceiptHandleIsInvalid", "MessageNotInflight", "QueueDoesNotExist")
        if self._raised(exc, *codes):
            return True
        # AWS answers a handle from an earlier delivery with this generic code.
        return (
            isinstance(exc, botocore.exceptions.ClientError)
            and exc.response.get("Error", {}).get("Code") == "InvalidParameterValue"
        )

    def create(
        self,
        name: str,
        tags: Mapping[str, str],
        attributes: Mapping["QueueAttributeNameType", str],
    ) -> str:
        """The queue's URL, making it with ``attributes`` and ``tags`` if
        there is none."""
        return self.ensure(name, tags, attributes)[0]

    def ensure(
        self,
        name: str,
        tags: Mapping[str, str],
        attributes: Mapping["QueueAttributeNameType", str],
    ) -> tuple[str, bool]:
        """The queue's URL, and whether this call made it.

        An existing queue is found with GetQueueUrl and never sent
        CreateQueue again: AWS refuses CreateQueue (``QueueNameExists``) when
        its attributes differ from the queue's, as they do once a setting
        changes between deploys or services.
        """
        url = self.url(name)
        if url is not None:
            return url, False
        try:
            url = self.client.create_queue(
                QueueName=name, Attributes=dict(attributes), tags=dict(tags)
            )["QueueUrl"]
        except self.client.exceptions.QueueNameExists:
            # Made meanwhile by another process, with other settings.
            url = self.client.get_queue_url(QueueName=name)["QueueUrl"]
            self._urls[name] = url
            return url, False
        self._urls[name] = url
        return url, True

    def tags(self, url: str) -> dict[str, str]:
        return dict(self.client.list_queue_tags(QueueUrl=url).get("Tags", {}))

    def tag(self, url: str, key: str, value: str) -> None:
        self.client.tag_queue(QueueUrl=url, Tags={key: value})

    def url(self, name: str) -> str | None:
        """The URL of an existing queue, or None."""
        url = self._urls.get(name)
        if url is not None:
            return url
        try:
            url = self.client.get_queue_url(QueueName=name)["QueueUrl"]
        except self.client.exceptions.QueueDoesNotExist:
            return None
        self._urls[name] = url
        return url

    def listed(self, prefix: str) -> list[str]:
        """The URLs of every queue whose name starts with ``prefix``."""
        urls: list[str] = []
        token: str | None = None
        while True:
            request: dict[str, Any] = {"QueueNamePrefix": prefix, "MaxResults": 1000}
            if token:
                request["NextToken"] = token
            reply = self.client.list_queues(**request)
            urls.extend(reply.get("QueueUrls", []))
            token = reply.get("NextToken")
            if not token:
                return urls

    def counts(self, url: str) -> dict[str, int]:
        """Approximate depths: visible, in flight, delayed, and when the queue
        was made (seconds since the epoch); zeros for a queue deleted
        meanwhile."""
        try:
            reply = self.client.get_queue_attributes(
                QueueUrl=url,
                AttributeNames=[
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                    "ApproximateNumberOfMessagesDelayed",
                    "CreatedTimestamp",
                ],
            )
        except self.client.exceptions.QueueDoesNotExist:
            self._urls = {k: v for k, v in self._urls.items() if v != url}
            return {"visible": 0, "in_flight": 0, "delayed": 0, "created": 0}
        attributes = reply.get("Attributes", {})
        return {
            "visible": int(attributes.get("ApproximateNumberOfMessages", 0)),
            "in_flight": int(
                attributes.get("ApproximateNumberOfMessagesNotVisible", 0)
            ),
            "delayed": int(attributes.get("ApproximateNumberOfMessagesDelayed", 0)),
            "created": int(attributes.get("CreatedTimestamp", 0)),
        }

    def send(
        self, url: str, entries: Sequence["SendMessageBatchRequestEntryTypeDef"]
    ) -> list[str]:
        """Send in batches of at most ten entries and ``MAX_MESSAGE_BYTES`` in
        all (SQS refuses a batch whose messages add up to more than its
        message limit), each failed entry again (up to three times in all);
        return the ids of the entries still not stored."""
        pending = list(entries)
        for attempt in range(3):
            failed: list[SendMessageBatchRequestEntryTypeDef] = []
            for chunk in batches(pending, self.settings.max_message_bytes):
                reply = self.client.send_message_batch(QueueUrl=url, Entries=chunk)
                refused = {f["Id"]: f for f in reply.get("Failed", [])}
                if refused:
                    logger.warning(
                        "SQS stored %d of %d messages in %s; retrying the rest: %s",
                        len(chunk) - len(refused),
                        len(chunk),
                        url,
                        next(iter(refused.values())).get("Message", ""),
                    )
                failed.extend(e for e in chunk if e["Id"] in refused)
            pending = failed
            if not pending:
                return []
            time.sleep(0.05 * 2**attempt)
        return [entry["Id"] for entry in pending]

    def receive(
        self, url: str, count: int, wait: int, visibility: int
    ) -> list["MessageTypeDef"]:
        reply = self.poller.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=max(1, min(count, BATCH)),
            WaitTimeSeconds=max(0, min(wait, LONGEST_POLL)),
            VisibilityTimeout=visibility,
            MessageAttributeNames=["All"],
            MessageSystemAttributeNames=["ApproximateReceiveCount", "SentTimestamp"],
        )
        return list(reply.get("Messages", []))

    def change_visibility(
        self, url: str, receipts: Sequence[str], seconds: int
    ) -> set[int]:
        """Set the visibility of each receipt; the positions that failed."""
        failed: set[int] = set()
        for start in range(0, len(receipts), BATCH):
            chunk = receipts[start : start + BATCH]
            reply = self.client.change_message_visibility_batch(
                QueueUrl=url,
                Entries=[
                    {
                        "Id": str(start + n),
                        "ReceiptHandle": r,
                        "VisibilityTimeout": seconds,
                    }
                    for n, r in enumerate(chunk)
                ],
            )
            failed |= {int(f["Id"]) for f in reply.get("Failed", [])}
        return failed

    def delete(self, url: str, receipts: Sequence[str]) -> set[str]:
        """Delete by receipt, ten a call; the receipts SQS confirmed deleted
        (``Successful``), never those it reported ``Failed``."""
        deleted: set[str] = set()
        for start in range(0, len(receipts), BATCH):
            chunk = receipts[start : start + BATCH]
            reply = self.client.delete_message_batch(
                QueueUrl=url,
                Entries=[
                    {"Id": str(n), "ReceiptHandle": r} for n, r in enumerate(chunk)
                ],
            )
            for failed in reply.get("Failed", []):
                logger.warning(
                    "SQS did not delete a message of %s: %s",
                    url,
                    failed.get("Message", failed.get("Code", "")),
                )
            deleted |= {chunk[int(ok["Id"])] for ok in reply.get("Successful", [])}
        return deleted
