"""Lambda event source mappings, locally: SQS and DynamoDB Streams pollers that invoke functions in-process."""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from devstack.faults import SQS_DUPLICATE, SQS_LATE
from devstack.functions import LocalFunction
from devstack.template import SqsEventSource, StreamEventSource

log = logging.getLogger("devstack")


@dataclass
class PollResult:
    """What one poll did: how many records reached the function, and whether any of them failed."""

    records: int = 0
    failed: bool = False


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


def _batch_failures(result: Any, identifiers: list[str]) -> set[str] | None:
    """The identifiers a ReportBatchItemFailures response marks as failed; None means "all of them".

    Lambda reads an empty or missing list as full success and a malformed entry as a failure of the
    whole batch.
    """
    if not isinstance(result, dict) or not result.get("batchItemFailures"):
        return set()
    failures = result["batchItemFailures"]
    if not isinstance(failures, list):
        return None
    known = set(identifiers)
    failed: set[str] = set()
    for failure in failures:
        identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
        if not identifier or identifier not in known:
            return None
        failed.add(identifier)
    return failed


# ---------------------------------------------------------------------------
# SQS
# ---------------------------------------------------------------------------


class SqsPoller:
    """Receives up to BatchSize messages, invokes the function, deletes what succeeded.

    Local difference: a failed message is made visible again at once (visibility timeout 0) instead of
    after the queue's VisibilityTimeout, so retries, and the RedrivePolicy's move to the DLQ after
    maxReceiveCount receives, happen within one `drain()`.
    """

    def __init__(self, function: LocalFunction, source: SqsEventSource, queue_url: str, sqs: Any, region: str) -> None:
        self.function = function
        self.source = source
        self.queue_url = queue_url
        self.name = f"{source.function_id}:{source.event_name}"
        self._sqs = sqs
        self._region = region

    def poll(self) -> PollResult:
        """Run at most one batch through the function."""
        messages = self._receive()
        faults = self.function.faults
        if faults is not None and messages:
            # Late: put back unprocessed for a few seconds (still in flight, so drain() waits for it).
            late = [m for m in messages if faults.decide(SQS_LATE, self.source.function_id, [f"sqs:{m['MessageId']}"])]
            self._release(late, faults.plan.late_seconds)
            messages = [m for m in messages if m not in late]
        if not messages:
            return PollResult()
        records = [self._record(message) for message in messages]
        ids = [record["messageId"] for record in records]
        try:
            result = self.function.invoke({"Records": records})
        except Exception as error:
            log.warning(
                "%s: batch of %d failed: %s: %s", self.name, len(ids), type(error).__name__, error, exc_info=True
            )
            failed: set[str] | None = None
        else:
            failed = _batch_failures(result, ids) if self.source.report_batch_item_failures else set()
            if failed is None:
                log.warning("%s: invalid batchItemFailures %r; the whole batch is retried", self.name, result)
        if failed is None:
            failed = set(ids)
        by_id = {message["MessageId"]: message for message in messages}
        done = [i for i in ids if i not in failed]
        any_failed = bool(failed)
        if faults is not None:
            # Delivered twice: a message the function succeeded on is left undeleted and visible again.
            again = {i for i in done if faults.decide(SQS_DUPLICATE, self.source.function_id, [f"sqs:{i}"])}
            failed = failed | again
            done = [i for i in done if i not in again]
        self._delete([by_id[i] for i in done])
        self._release([by_id[i] for i in ids if i in failed])
        return PollResult(records=len(records), failed=any_failed)

    def pending(self) -> str | None:
        """Why the queue is not idle yet (messages visible, delayed or in flight), or None."""
        attributes = self._sqs.get_queue_attributes(
            QueueUrl=self.queue_url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesDelayed",
                "ApproximateNumberOfMessagesNotVisible",
            ],
        )["Attributes"]
        waiting = sum(int(value) for value in attributes.values())
        return f"{self.name}: {waiting} message(s) in {self.queue_url}" if waiting else None

    def _receive(self) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        while len(messages) < self.source.batch_size:
            wanted = min(10, self.source.batch_size - len(messages))
            received = self._sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=wanted,
                WaitTimeSeconds=0,
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            messages.extend(received)
            if len(received) < wanted:
                break
        return messages

    def _record(self, message: dict[str, Any]) -> dict[str, Any]:
        """A message as Lambda's SQS event gives it."""
        attributes = {}
        for name, value in (message.get("MessageAttributes") or {}).items():
            attribute: dict[str, Any] = {
                "stringListValues": value.get("StringListValues", []),
                "binaryListValues": [_b64(item) for item in value.get("BinaryListValues", [])],
                "dataType": value["DataType"],
            }
            if "StringValue" in value:
                attribute["stringValue"] = value["StringValue"]
            if "BinaryValue" in value:
                attribute["binaryValue"] = _b64(value["BinaryValue"])
            attributes[name] = attribute
        record = {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message.get("Body", ""),
            "attributes": message.get("Attributes", {}),
            "messageAttributes": attributes,
            "md5OfBody": message.get("MD5OfBody"),
            "eventSource": "aws:sqs",
            "eventSourceARN": self.source.queue_arn,
            "awsRegion": self._region,
        }
        if "MD5OfMessageAttributes" in message:
            record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
        return record

    def _delete(self, messages: list[dict[str, Any]]) -> None:
        for start in range(0, len(messages), 10):
            chunk = messages[start : start + 10]
            self._sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)],
            )

    def _release(self, messages: list[dict[str, Any]], after: int = 0) -> None:
        for start in range(0, len(messages), 10):
            chunk = messages[start : start + 10]
            self._sqs.change_message_visibility_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": after}
                    for i, m in enumerate(chunk)
                ],
            )


# ---------------------------------------------------------------------------
# DynamoDB Streams
# ---------------------------------------------------------------------------


def _lambda_attribute(value: Any) -> Any:
    """boto3 decodes binary attribute values; Lambda's event carries them base64-encoded."""
    if isinstance(value, bytes | bytearray):
        return _b64(bytes(value))
    if isinstance(value, dict):
        return {key: _lambda_attribute(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_lambda_attribute(item) for item in value]
    return value


@dataclass
class _Batch:
    records: list[dict[str, Any]]
    attempts: int = 0  # failed invocations so far
    function_error: str | None = None


@dataclass
class _Shard:
    shard_id: str
    iterator: str | None
    batches: deque[_Batch] = field(default_factory=deque)


class StreamPoller:
    """Reads a table's stream in order, batch by batch, with Lambda's retry, bisect and on-failure rules."""

    def __init__(
        self,
        function: LocalFunction,
        source: StreamEventSource,
        streams: Any,
        sqs: Any,
        sns: Any,
        region: str,
    ) -> None:
        self.function = function
        self.source = source
        self.name = f"{source.function_id}:{source.event_name}"
        self._streams = streams
        self._sqs = sqs
        self._sns = sns
        self._region = region
        description = streams.describe_stream(StreamArn=source.stream_arn)["StreamDescription"]
        position = "LATEST" if source.starting_position == "LATEST" else "TRIM_HORIZON"
        # Iterators are taken now and kept between polls, so nothing written after provisioning is missed
        # and nothing already processed is read again.
        self._shards = [
            _Shard(
                shard["ShardId"],
                streams.get_shard_iterator(
                    StreamArn=source.stream_arn, ShardId=shard["ShardId"], ShardIteratorType=position
                )["ShardIterator"],
            )
            for shard in description.get("Shards", [])
        ]

    def poll(self) -> PollResult:
        """Run at most one batch per shard through the function."""
        total = PollResult()
        for shard in self._shards:
            result = self._poll_shard(shard)
            total.records += result.records
            total.failed = total.failed or result.failed
        return total

    def pending(self) -> str | None:
        """Why the stream is not idle yet (a batch is waiting to be retried), or None."""
        waiting = sum(len(batch.records) for shard in self._shards for batch in shard.batches)
        return f"{self.name}: {waiting} record(s) being retried" if waiting else None

    def _poll_shard(self, shard: _Shard) -> PollResult:
        if not shard.batches:
            if shard.iterator is None:
                return PollResult()
            response = self._streams.get_records(ShardIterator=shard.iterator, Limit=self.source.batch_size)
            shard.iterator = response.get("NextShardIterator")
            records = [self._record(raw) for raw in response.get("Records", [])]
            if not records:
                return PollResult()
            shard.batches.append(_Batch(records))
        batch = shard.batches[0]
        try:
            result = self.function.invoke({"Records": batch.records})
        except Exception as error:
            log.warning(
                "%s: batch of %d failed: %s: %s",
                self.name,
                len(batch.records),
                type(error).__name__,
                error,
                exc_info=True,
            )
            self._after_error(shard, batch)
            return PollResult(records=len(batch.records), failed=True)
        checkpoint = self._checkpoint(result, batch.records)
        if checkpoint is None:
            shard.batches.popleft()
            return PollResult(records=len(batch.records))
        # Lambda retries from the lowest failed sequence number; the records before it are done.
        retry = _Batch(batch.records[checkpoint:], batch.attempts + 1)
        shard.batches[0] = retry
        self._give_up_if_exhausted(shard, retry)
        return PollResult(records=len(batch.records), failed=True)

    def _after_error(self, shard: _Shard, batch: _Batch) -> None:
        if self.source.bisect_on_error and len(batch.records) > 1:
            # Splitting does not count as a retry (as on Lambda); each half is retried in order.
            middle = len(batch.records) // 2
            shard.batches.popleft()
            shard.batches.appendleft(_Batch(batch.records[middle:], batch.attempts, "Unhandled"))
            shard.batches.appendleft(_Batch(batch.records[:middle], batch.attempts, "Unhandled"))
            return
        batch.attempts += 1
        batch.function_error = "Unhandled"
        self._give_up_if_exhausted(shard, batch)

    def _checkpoint(self, result: Any, records: list[dict[str, Any]]) -> int | None:
        """Index of the first record to retry, or None when the whole batch succeeded."""
        if not self.source.report_batch_item_failures:
            return None
        sequence_numbers = [record["dynamodb"]["SequenceNumber"] for record in records]
        failed = _batch_failures(result, sequence_numbers)
        if failed is None:
            log.warning("%s: invalid batchItemFailures %r; the whole batch is retried", self.name, result)
            return 0
        if not failed:
            return None
        return min(sequence_numbers.index(sequence) for sequence in failed)

    def _give_up_if_exhausted(self, shard: _Shard, batch: _Batch) -> None:
        limit = self.source.maximum_retry_attempts
        if limit < 0 or batch.attempts <= limit:
            return
        shard.batches.popleft()
        self._send_to_on_failure(shard, batch)

    def _send_to_on_failure(self, shard: _Shard, batch: _Batch) -> None:
        first, last = batch.records[0]["dynamodb"], batch.records[-1]["dynamodb"]
        now = dt.datetime.now(dt.UTC)

        def arrival(record: dict[str, Any]) -> str:
            stamp = record.get("ApproximateCreationDateTime")
            when = dt.datetime.fromtimestamp(stamp, dt.UTC) if isinstance(stamp, int | float) else now
            return when.strftime("%Y-%m-%dT%H:%M:%SZ")

        response_context: dict[str, Any] = {"statusCode": 200, "executedVersion": "$LATEST"}
        if batch.function_error:
            response_context["functionError"] = batch.function_error
        invocation_record = {
            "requestContext": {
                "requestId": str(uuid.uuid4()),
                "functionArn": self.function.spec.arn,
                "condition": "RetryAttemptsExhausted",
                "approximateInvokeCount": batch.attempts,
            },
            "responseContext": response_context,
            "version": "1.0",
            "timestamp": now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z",
            "DDBStreamBatchInfo": {
                "shardId": shard.shard_id,
                "startSequenceNumber": first["SequenceNumber"],
                "endSequenceNumber": last["SequenceNumber"],
                "approximateArrivalOfFirstRecord": arrival(first),
                "approximateArrivalOfLastRecord": arrival(last),
                "batchSize": len(batch.records),
                "streamArn": self.source.stream_arn,
            },
            # Local convenience: Lambda sends only the pointers above, to be read back from the stream.
            "records": batch.records,
        }
        destination = self.source.on_failure_arn
        log.warning(
            "%s: giving up on %d record(s) after %d attempt(s)%s",
            self.name,
            len(batch.records),
            batch.attempts,
            f"; sent to {destination}" if destination else "; no OnFailure destination, discarded",
        )
        if not destination:
            return
        body = json.dumps(invocation_record)
        _, _, service, _, account, resource = destination.split(":", 5)
        if service == "sqs":
            url = self._sqs.get_queue_url(QueueName=resource, QueueOwnerAWSAccountId=account)["QueueUrl"]
            self._sqs.send_message(QueueUrl=url, MessageBody=body)
        elif service == "sns":
            self._sns.publish(TopicArn=destination, Message=body)
        else:
            log.warning("%s: OnFailure destination %s is not SQS or SNS; not delivered locally", self.name, destination)

    def _record(self, raw: dict[str, Any]) -> dict[str, Any]:
        """A stream record as Lambda's DynamoDB event gives it."""
        change = dict(raw["dynamodb"])
        created = change.get("ApproximateCreationDateTime")
        if isinstance(created, dt.datetime):
            change["ApproximateCreationDateTime"] = int(created.timestamp())
        for image in ("Keys", "NewImage", "OldImage"):
            if image in change:
                change[image] = _lambda_attribute(change[image])
        record = {
            "eventID": raw.get("eventID"),
            "eventName": raw.get("eventName"),
            "eventVersion": raw.get("eventVersion", "1.1"),
            "eventSource": "aws:dynamodb",
            "awsRegion": raw.get("awsRegion", self._region),
            "dynamodb": change,
            "eventSourceARN": self.source.stream_arn,
        }
        if "userIdentity" in raw:
            record["userIdentity"] = raw["userIdentity"]
        return record
