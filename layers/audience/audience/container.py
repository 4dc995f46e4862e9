"""Wiring: services built once per execution environment from validated settings."""

from __future__ import annotations

import sys
import time
from functools import cache
from typing import TYPE_CHECKING, Any

from audience.contacts.repository import ContactsRepository
from audience.contacts.service import ContactService
from audience.errors import ConfigurationError, ValidationError
from audience.orgs.repository import OrgsRepository
from audience.orgs.service import OrgService
from audience.segments.evaluation import SegmentEvaluator
from audience.segments.events import EventService
from audience.segments.jobs import JobRunner, JobStarter
from audience.segments.repository import SegmentsRepository
from audience.segments.service import SegmentService
from audience.settings import get_settings
from audience.tags.repository import TagsRepository
from audience.tags.service import TagService

if TYPE_CHECKING:  # compliance and exports are imported by their builders, when a function uses them
    from audience.analytics import AnalyticsService
    from audience.broadcasts.delivery import Delivery
    from audience.broadcasts.planner import Planner
    from audience.broadcasts.repository import BroadcastsRepository
    from audience.broadcasts.sender import Sender
    from audience.broadcasts.service import BroadcastService
    from audience.channels.inbound_rules import InboundRulesService
    from audience.channels.service import ConnectionService
    from audience.compliance.consent import ConsentService
    from audience.compliance.dnc import DoNotContactService
    from audience.compliance.eligibility import EligibilityService
    from audience.exports.service import ExportService
    from audience.exports.worker import ExportWorker
    from audience.followups.service import FollowUpService
    from audience.imports.service import ImportService
    from audience.inbound.processor import InboundProcessor
    from audience.inbound.repository import InboundRepository
    from audience.outbound.delivery import Deliverer as WebhookDeliverer
    from audience.outbound.delivery import Dispatcher as WebhookDispatcher
    from audience.outbound.service import EndpointService as WebhookEndpointService
    from audience.policies.frequency import FrequencyCaps
    from audience.policies.service import SendPolicyService


@cache
def org_service() -> OrgService:
    settings = get_settings()
    return OrgService(
        OrgsRepository(settings.orgs_table),
        default_country=settings.default_country,
        default_rate_limit=settings.rate_limit_per_minute,
    )


@cache
def contact_service() -> ContactService:
    settings = get_settings()
    return ContactService.from_settings(settings)


@cache
def segment_jobs() -> JobStarter:
    arn = get_settings().segment_jobs_state_machine
    if not arn:
        raise ConfigurationError("SEGMENT_JOBS_STATE_MACHINE is not set; this function cannot start segment jobs")
    return JobStarter(arn)


@cache
def segment_service() -> SegmentService:
    settings = get_settings()
    return SegmentService(
        SegmentsRepository(settings.contacts_table),
        ContactsRepository(settings.contacts_table),
        OrgsRepository(settings.orgs_table),
        segment_jobs,
    )


@cache
def event_service() -> EventService:
    settings = get_settings()
    return EventService(
        SegmentsRepository(settings.contacts_table),
        ContactsRepository(settings.contacts_table),
        OrgsRepository(settings.orgs_table),
        default_country=settings.default_country,
    )


@cache
def segment_evaluator() -> SegmentEvaluator:
    return SegmentEvaluator(SegmentsRepository(get_settings().contacts_table))


@cache
def job_runner() -> JobRunner:
    settings = get_settings()
    return JobRunner(
        ContactsRepository(settings.contacts_table), SegmentsRepository(settings.contacts_table), tag_service
    )


@cache
def tag_service() -> TagService:
    settings = get_settings()
    return TagService(
        TagsRepository(settings.contacts_table),
        ContactsRepository(settings.contacts_table),
        contact_service(),
        SegmentsRepository(settings.contacts_table),
        segment_jobs,
    )


@cache
def dnc_service() -> DoNotContactService:
    # One builder, shared with the export worker's light wiring (ExportFunction never imports this module).
    from audience.exports import wiring

    return wiring.dnc_service()


@cache
def consent_service() -> ConsentService:
    from audience.compliance.consent import ConsentService
    from audience.compliance.repository import ConsentRepository

    settings = get_settings()
    return ConsentService(ConsentRepository(settings.contacts_table), ContactsRepository(settings.contacts_table))


@cache
def eligibility_service() -> EligibilityService:
    from audience.compliance.eligibility import EligibilityService
    from audience.compliance.repository import ConsentRepository

    settings = get_settings()
    return EligibilityService(
        ContactsRepository(settings.contacts_table), dnc_service(), ConsentRepository(settings.contacts_table)
    )


@cache
def export_service() -> ExportService:
    from audience.exports.repository import ExportsRepository
    from audience.exports.service import ExportService
    from audience.exports.wiring import resources

    files, jobs = resources()
    return ExportService(
        ExportsRepository(get_settings().contacts_table),
        files,
        jobs,
        contact_service(),
        segments=lambda org_id, segment_id: segment_service().get(org_id, segment_id),
    )


@cache
def export_worker() -> ExportWorker:
    """The export worker (wired in audience.exports.wiring, which ExportFunction imports on its own)."""
    from audience.exports.wiring import export_worker

    return export_worker()


@cache
def import_service() -> ImportService:
    from audience.imports import wiring
    from audience.imports.repository import ImportsRepository
    from audience.imports.service import ImportService

    def static_segment(org_id: str, segment_id: str) -> object:
        try:
            return segment_service().check_static(org_id, [segment_id])[0]
        except ValidationError:
            raise ValidationError.for_field("segment_id", segment_id, "is not a static segment of this org") from None

    return ImportService(
        ImportsRepository(get_settings().contacts_table),
        wiring.files(),
        wiring.runner,
        org_context=wiring.org_context,
        static_segment=static_segment,
    )


@cache
def connection_service() -> ConnectionService:
    from audience.channels.repository import ConnectionsRepository
    from audience.channels.secrets import SecretStore
    from audience.channels.service import ConnectionService
    from audience.channels.telegram import BotApi

    settings = get_settings()
    return ConnectionService(
        ConnectionsRepository(settings.orgs_table), SecretStore(settings.stage), BotApi(settings.telegram_api_url)
    )


@cache
def inbound_rules_service() -> InboundRulesService:
    from audience.channels.inbound_rules import InboundRulesService
    from audience.channels.repository import ConnectionsRepository

    settings = get_settings()
    return InboundRulesService(
        ConnectionsRepository(settings.orgs_table),
        SegmentsRepository(settings.contacts_table),
        ContactsRepository(settings.contacts_table),
        dnc_service(),
    )


@cache
def inbound_repository() -> InboundRepository:
    from audience.inbound.repository import InboundRepository

    return InboundRepository(get_settings().contacts_table)


@cache
def inbound_processor() -> InboundProcessor:
    from audience import aws
    from audience.channels.repository import ConnectionsRepository
    from audience.channels.secrets import SecretStore
    from audience.compliance.repository import ConsentRepository
    from audience.events import EventPublisher
    from audience.inbound.processor import InboundProcessor

    def confirm_subscription(topic_arn: str, token: str) -> None:
        region = topic_arn.split(":")[3]
        aws.regional_client("sns", region).confirm_subscription(
            TopicArn=topic_arn, Token=token, AuthenticateOnUnsubscribe="true"
        )

    settings = get_settings()
    return InboundProcessor(
        inbound=inbound_repository(),
        contacts=contact_service(),
        contacts_repository=ContactsRepository(settings.contacts_table),
        dnc=dnc_service(),
        consent=ConsentRepository(settings.contacts_table),
        connections=ConnectionsRepository(settings.orgs_table),
        secrets=SecretStore(settings.stage),
        orgs=OrgsRepository(settings.orgs_table),
        publisher=EventPublisher(settings.event_bus_name),
        confirm_subscription=confirm_subscription,
        broadcasts=broadcasts_repository() if settings.broadcasts_table else None,
        followups=follow_up_service() if settings.follow_up_state_machine else None,
        segments=segment_service(),
        tags=tag_service(),
    )


def _required(value: str, variable: str) -> str:
    if not value:
        raise ConfigurationError(f"{variable} is not set; this function does not handle broadcasts")
    return value


@cache
def broadcasts_repository() -> BroadcastsRepository:
    from audience.broadcasts.repository import BroadcastsRepository

    return BroadcastsRepository(_required(get_settings().broadcasts_table, "BROADCASTS_TABLE"))


@cache
def delivery() -> Delivery:
    from audience.broadcasts.delivery import Delivery
    from audience.channels.repository import ConnectionsRepository
    from audience.channels.secrets import SecretStore

    settings = get_settings()
    return Delivery(
        ConnectionsRepository(settings.orgs_table),
        SecretStore(settings.stage),
        telegram_api_url=settings.telegram_api_url,
        graph_api_url=settings.graph_api_url,
        sandbox=_sandbox_provider if settings.sandbox_queue_url else None,
    )


def _sandbox_provider(connection: Any) -> Any:
    import json

    from audience import aws, clock
    from audience.providers.sandbox import SandboxProvider

    repo, queue_url = broadcasts_repository(), get_settings().sandbox_queue_url

    def record(message_id: str, data: dict[str, Any]) -> None:
        repo.record_sandbox(connection.org_id, connection.id, message_id, data, clock.now_iso())

    def enqueue(job: dict[str, Any]) -> None:
        aws.client("sqs").send_message(QueueUrl=queue_url, MessageBody=json.dumps(job), DelaySeconds=1)

    return SandboxProvider(connection.id, connection.channel, record=record, enqueue=enqueue)


@cache
def sandbox_poster() -> Any:
    import time

    from audience.channels.repository import ConnectionsRepository
    from audience.channels.secrets import SecretStore
    from audience.errors import NotFoundError
    from audience.providers.sandbox import StatusPoster

    settings = get_settings()
    connections, secrets = ConnectionsRepository(settings.orgs_table), SecretStore(settings.stage)

    def signing_secret(connection_id: str) -> str | None:
        try:
            return secrets.get(connection_id).get("signing_secret")
        except NotFoundError:
            return None

    return StatusPoster(settings.api_base_url, connections.find, signing_secret, now=time.time)


@cache
def frequency_caps() -> FrequencyCaps:
    """Each org's frequency cap on marketing messages, as the senders (broadcasts, follow-ups) apply it."""
    from audience.policies.frequency import FrequencyCaps

    settings = get_settings()
    return FrequencyCaps(_required(settings.broadcasts_table, "BROADCASTS_TABLE"), OrgsRepository(settings.orgs_table))


@cache
def send_policy_service() -> SendPolicyService:
    from audience.policies.service import SendPolicyService

    return SendPolicyService(OrgsRepository(get_settings().orgs_table), frequency_caps())


@cache
def broadcast_sender() -> Sender:
    from audience.broadcasts.planner import finish_if_done
    from audience.broadcasts.sender import Sender

    settings = get_settings()
    repo = broadcasts_repository()
    segments = SegmentsRepository(settings.contacts_table)

    def on_tallied(org_id: str, broadcast_id: str) -> None:
        finish_if_done(repo, segments, org_id, broadcast_id)

    return Sender(
        repo,
        ContactsRepository(settings.contacts_table),
        eligibility_service(),
        delivery(),
        on_tallied=on_tallied,
        caps=frequency_caps(),
        links_base_url=settings.api_base_url,
        send_queue_url=settings.send_queue_url,
    )


@cache
def broadcast_planner() -> Planner:
    from audience.broadcasts.planner import Planner

    settings = get_settings()
    return Planner(
        broadcasts_repository(),
        ContactsRepository(settings.contacts_table),
        SegmentsRepository(settings.contacts_table),
        eligibility_service(),
        delivery(),
        send_queue_url=_required(settings.send_queue_url, "SEND_QUEUE_URL"),
    )


@cache
def broadcast_service() -> BroadcastService:
    from audience.broadcasts.destinations import DestinationLimits
    from audience.broadcasts.service import BroadcastService

    settings = get_settings()
    return BroadcastService(
        broadcasts_repository(),
        contacts=contact_service(),
        contacts_repository=ContactsRepository(settings.contacts_table),
        segments=SegmentsRepository(settings.contacts_table),
        eligibility=eligibility_service(),
        delivery=delivery(),
        state_machine_arn=_required(settings.broadcast_state_machine, "BROADCAST_STATE_MACHINE"),
        transactional_queue_url=_required(settings.transactional_queue_url, "TRANSACTIONAL_QUEUE_URL"),
        # A waiting send gives the provider 20 s (the API answers within its 30 s timeout); what is not taken
        # by then goes on in the background.
        send_now=lambda message: broadcast_sender().process(message, deadline=time.time() + 20),
        send_test=lambda *args: broadcast_sender().test(*args),
        record_consent=consent_service().record,
        # Per-destination schedules live in the broadcasts table beside the broadcast's own rate window.
        destination_limits=DestinationLimits(_required(settings.broadcasts_table, "BROADCASTS_TABLE")),
    )


@cache
def analytics_service() -> AnalyticsService:
    from audience.analytics import AnalyticsService

    settings = get_settings()
    return AnalyticsService(
        ContactsRepository(settings.contacts_table),
        broadcasts_repository(),
        SegmentsRepository(settings.contacts_table),
    )


@cache
def follow_up_service() -> FollowUpService:
    from audience.followups.repository import FollowUpsRepository
    from audience.followups.service import FollowUpService

    settings = get_settings()
    return FollowUpService(
        FollowUpsRepository(settings.contacts_table, settings.orgs_table),
        inbound_repository(),
        ContactsRepository(settings.contacts_table),
        eligibility_service(),
        delivery(),
        state_machine_arn=_required(settings.follow_up_state_machine, "FOLLOW_UP_STATE_MACHINE"),
        idempotency=broadcasts_repository(),
        caps=frequency_caps(),
    )


def _webhook_dispatcher() -> WebhookDispatcher:
    import json

    from audience import aws
    from audience.outbound.delivery import Dispatcher
    from audience.outbound.repository import OutboundRepository

    settings = get_settings()
    queue_url = _required(settings.webhook_delivery_queue_url, "WEBHOOK_DELIVERY_QUEUE_URL")

    def enqueue(body: dict[str, Any], delay_seconds: int) -> None:
        aws.client("sqs").send_message(QueueUrl=queue_url, MessageBody=json.dumps(body), DelaySeconds=delay_seconds)

    return Dispatcher(OutboundRepository(_required(settings.broadcasts_table, "BROADCASTS_TABLE")), enqueue)


@cache
def webhook_endpoints() -> WebhookEndpointService:
    """Outbound webhook endpoints and their deliveries (the API)."""
    from audience.outbound.repository import OutboundRepository
    from audience.outbound.secrets import EndpointSecrets
    from audience.outbound.service import EndpointService

    settings = get_settings()
    return EndpointService(
        OutboundRepository(_required(settings.broadcasts_table, "BROADCASTS_TABLE")),
        EndpointSecrets(settings.stage),
        _webhook_dispatcher(),
        allow_private_urls=settings.webhook_allow_private_urls,
    )


@cache
def webhook_dispatcher() -> WebhookDispatcher:
    """Fan-out of domain events to webhook deliveries (WebhookFanOutFunction)."""
    return _webhook_dispatcher()


@cache
def webhook_deliverer() -> WebhookDeliverer:
    """Attempts of webhook deliveries (WebhookDeliveryFunction)."""
    from audience.outbound.delivery import Deliverer
    from audience.outbound.http import WebhookPoster
    from audience.outbound.repository import OutboundRepository
    from audience.outbound.secrets import EndpointSecrets

    settings = get_settings()
    poster = WebhookPoster(allow_private=settings.webhook_allow_private_urls)
    return Deliverer(
        OutboundRepository(_required(settings.broadcasts_table, "BROADCASTS_TABLE")),
        EndpointSecrets(settings.stage),
        webhook_dispatcher(),
        poster.post,
        retry_base=settings.webhook_retry_base_seconds,
    )


def reset() -> None:
    """Forget built services (tests and the local stack call this after changing the environment)."""
    from audience import aws

    get_settings.cache_clear()
    org_service.cache_clear()
    contact_service.cache_clear()
    segment_jobs.cache_clear()
    segment_service.cache_clear()
    event_service.cache_clear()
    job_runner.cache_clear()
    tag_service.cache_clear()
    segment_evaluator.cache_clear()
    dnc_service.cache_clear()
    consent_service.cache_clear()
    eligibility_service.cache_clear()
    export_service.cache_clear()
    export_worker.cache_clear()
    import_service.cache_clear()
    analytics_service.cache_clear()
    connection_service.cache_clear()
    inbound_repository.cache_clear()
    inbound_processor.cache_clear()
    broadcasts_repository.cache_clear()
    delivery.cache_clear()
    frequency_caps.cache_clear()
    follow_up_service.cache_clear()
    send_policy_service.cache_clear()
    broadcast_sender.cache_clear()
    broadcast_planner.cache_clear()
    broadcast_service.cache_clear()
    sandbox_poster.cache_clear()
    webhook_endpoints.cache_clear()
    webhook_dispatcher.cache_clear()
    webhook_deliverer.cache_clear()
    if "audience.webhooks.ack" in sys.modules:
        sys.modules["audience.webhooks.ack"].reset()
    if "audience.imports.wiring" in sys.modules:
        sys.modules["audience.imports.wiring"].reset()
    if "audience.exports.wiring" in sys.modules:
        sys.modules["audience.exports.wiring"].reset()
    aws.reset()
