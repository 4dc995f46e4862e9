"""The org's send policy: a frequency cap on the marketing messages each contact gets."""

from __future__ import annotations

from fastapi import APIRouter

from audience import container
from audience.api.deps import OrgId
from audience.api.policy_schemas import FrequencyCapOut, SendPolicyIn, SendPolicyOut
from audience.policies.frequency import FrequencyCap
from audience.policies.service import SendPolicy

router = APIRouter(prefix="/orgs/{org_id}/send-policy", tags=["send-policy"])


def _out(policy: SendPolicy) -> SendPolicyOut:
    cap = policy.frequency_cap
    return SendPolicyOut(
        frequency_cap=FrequencyCapOut(limit=cap.limit, window_hours=cap.window_hours) if cap else None,
        updated_at=policy.updated_at,
    )


@router.get("", response_model=SendPolicyOut, summary="The org's send policy")
def get_send_policy(org_id: OrgId) -> SendPolicyOut:
    return _out(container.send_policy_service().get(org_id))


@router.put("", response_model=SendPolicyOut, summary="Set the org's frequency cap, or turn it off")
def put_send_policy(org_id: OrgId, body: SendPolicyIn) -> SendPolicyOut:
    """`frequency_cap: {limit, window_hours}` allows each contact at most `limit` marketing messages in any
    rolling `window_hours` (a broadcast on two channels is two messages); a marketing recipient over it ends SKIPPED
    with reason `frequency_cap`. `null` turns the cap off. Transactional messages are never capped."""
    cap = body.frequency_cap
    policy = container.send_policy_service().put(
        org_id, FrequencyCap.of_hours(cap.limit, cap.window_hours) if cap is not None else None
    )
    return _out(policy)
