"""WebhookFunction: channel webhooks (Meta, Telegram, SNS, custom) acknowledged in milliseconds.

It authenticates the call, finds the tenant, enqueues the raw event on InboundQueue and answers; the
inbound processor does the rest. Deliberately light: no web framework, no Powertools (their import
would double the cold start of a function that must answer fast); one JSON log line per rejected call.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from audience.webhooks.ack import acknowledger

log = logging.getLogger("audience.webhooks")
log.setLevel(logging.INFO)


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    reply = acknowledger().handle(event)
    if reply.status != 200:
        log.warning(
            json.dumps(
                {
                    "message": "webhook call refused",
                    "status": reply.status,
                    "reason": reply.body,
                    "path": event.get("rawPath"),
                    "request_id": getattr(context, "aws_request_id", None),
                }
            )
        )
    return reply.to_lambda()
