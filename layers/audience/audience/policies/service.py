"""An org's send policy: the rules its marketing messages follow (today, a frequency cap)."""

from __future__ import annotations

from dataclasses import dataclass

from audience import clock
from audience.orgs.repository import OrgsRepository
from audience.policies.frequency import FrequencyCap, FrequencyCaps


@dataclass(frozen=True, slots=True)
class SendPolicy:
    frequency_cap: FrequencyCap | None
    updated_at: str | None


class SendPolicyService:
    def __init__(self, orgs: OrgsRepository, caps: FrequencyCaps) -> None:
        self._orgs = orgs
        self._caps = caps

    def get(self, org_id: str) -> SendPolicy:
        """The org's send policy (no cap, and no `updated_at`, when it was never set)."""
        stored = self._orgs.get_send_policy(org_id)
        return SendPolicy(FrequencyCap.stored(stored["frequency_cap"]), stored["updated_at"])

    def put(self, org_id: str, frequency_cap: FrequencyCap | None) -> SendPolicy:
        """Replace the org's send policy (`frequency_cap` None: not capped). Sends from this process follow
        it at once, other senders within POLICY_SECONDS."""
        policy = SendPolicy(frequency_cap, clock.now_iso())
        self._orgs.put_send_policy(
            org_id,
            {
                "frequency_cap": frequency_cap.as_dict() if frequency_cap is not None else None,
                "updated_at": policy.updated_at,
            },
        )
        self._caps.forget(org_id)
        return policy
