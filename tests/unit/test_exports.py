"""Exports: formula neutralisation, the CSV format, the API, and the worker's streaming, hand-overs and
idempotency on redelivery."""

import csv
import io
import json
from pathlib import Path

import boto3
import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from audience import container
from audience.exports.csvfile import FORMULA_STARTS, CsvWriter, neutralise, restore
from audience.exports.models import Checkpoint
from audience.settings import get_settings

EVENTS = Path(__file__).resolve().parents[2] / "events"


# -- spreadsheet formulas -------------------------------------------------------------------------


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_every_dangerous_leading_character_is_neutralised(start):
    cell = f'{start}HYPERLINK("https://evil.example","x")'
    assert neutralise(cell) == "'" + cell
    assert restore(neutralise(cell)) == cell


def test_a_phone_number_is_neutralised_so_it_shows_as_text():
    assert neutralise("+6281234567890") == "'+6281234567890"
    assert restore("'+6281234567890") == "+6281234567890"


@pytest.mark.parametrize("cell", ["", "Sari", "6281234567890", "'quoted", "sari@example.com", " =not first", "a=b"])
def test_harmless_cells_are_left_alone(cell):
    assert neutralise(cell) == cell
    assert restore(cell) == cell


def test_csv_is_utf8_with_a_bom_crlf_and_rfc4180_quoting():
    writer = CsvWriter()
    writer.writerow(["id", "name", "note"])
    writer.writerow(["ct_1", "Wijaya, Sari", 'says "hi"\non two lines'])
    writer.writerow(["ct_2", "=1+1", "+62812"])
    data = writer.take()
    assert data.startswith(b"\xef\xbb\xbf")
    text = data.decode("utf-8-sig")
    assert text.split("\r\n")[0] == "id,name,note"
    assert '"Wijaya, Sari","says ""hi""\non two lines"' in text
    assert list(csv.reader(io.StringIO(text)))[2] == ["ct_2", "'=1+1", "'+62812"]
    assert writer.take() == b""  # taken once; a second chunk carries no second BOM
    writer.writerow(["ct_3", "é", ""])
    assert writer.take() == "ct_3,é,\r\n".encode()
    assert set(FORMULA_STARTS) == {"=", "+", "-", "@", "\t", "\r"}


# -- the API --------------------------------------------------------------------------------------


def _bulk(org, contacts):
    response = org.client.post("/orgs/c/contacts/bulk", json={"contacts": contacts})
    assert response.json()["summary"]["created"] == len(contacts), response.text
    return [r["contact_id"] for r in response.json()["results"]]


def _export(org, stack, **body):
    response = org.client.post("/orgs/c/exports", json=body)
    assert response.status_code == 202, response.text
    assert response.headers["Location"] == f"/orgs/{org.org_id}/exports/{response.json()['id']}"
    stack.drain()
    return org.client.get(f"/orgs/c/exports/{response.json()['id']}").json()


def test_a_queued_export_answers_202_and_runs_from_the_queue(org, stack):
    _bulk(org, [{"email": f"p{i}@x.io", "tags": ["vip"] if i % 2 else []} for i in range(5)])
    created = org.client.post("/orgs/c/exports", json={"kind": "contacts", "filter": {"tag": "vip"}})
    assert created.status_code == 202
    queued = created.json()
    assert (queued["status"], queued["rows"], queued["download_url"]) == ("queued", None, None)
    assert queued["filter"] == {"tag": "vip"}
    stack.drain()
    done = org.client.get(f"/orgs/c/exports/{queued['id']}").json()
    assert (done["status"], done["rows"]) == ("done", 2)
    assert "X-Amz-Expires=900" in done["download_url"]
    listed = org.client.get("/orgs/c/exports").json()["items"]
    assert [e["id"] for e in listed] == [queued["id"]]
    assert listed[0]["download_url"] is None  # links are handed out one export at a time


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"kind": "everything"}, 422, "kind"),
        ({"kind": "do_not_contact", "filter": {"tag": "vip"}}, 422, "filter"),
        ({"kind": "contacts", "filter": {"created_from": "2026-02-30"}}, 422, "created_from"),
        ({"kind": "contacts", "filter": {"status": "GONE"}}, 422, "filter.status"),
        ({"kind": "contacts", "filter": {"colour": "red"}}, 422, "filter.colour"),
        ({"kind": "contacts", "segment_id": "sg_00000000000000000000000000"}, 404, None),
    ],
)
def test_bad_requests_are_refused_before_anything_is_queued(org, stack, body, status, field):
    response = org.client.post("/orgs/c/exports", json=body)
    assert response.status_code == status, response.text
    if field:
        assert response.json()["error"]["fields"][0]["field"] == field
    assert org.client.get("/orgs/c/exports").json()["items"] == []
    assert _messages(stack) == []


def test_another_orgs_export_is_not_found(org, other_org, stack):
    theirs = other_org.client.post("/orgs/c/exports", json={"kind": "do_not_contact"}).json()
    stack.drain()
    assert org.client.get(f"/orgs/c/exports/{theirs['id']}").status_code == 404
    assert org.client.get("/orgs/c/exports/not-an-export").status_code == 404
    assert org.client.get(f"/orgs/{other_org.org_id}/exports/{theirs['id']}").status_code == 404
    assert org.client.get("/orgs/c/exports").json()["items"] == []
    assert other_org.client.get(f"/orgs/c/exports/{theirs['id']}").json()["status"] == "done"


def test_exports_need_their_settings_only_when_used(org, stack, monkeypatch):
    monkeypatch.setenv("EXPORTS_BUCKET", "")
    container.reset()
    assert get_settings().exports_bucket == ""
    assert org.client.get("/orgs/c/contacts").status_code == 200  # everything else works
    from audience.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="EXPORTS_BUCKET"):
        container.export_worker()
    container.reset()


# -- the worker -----------------------------------------------------------------------------------


def _object(stack, org, export_id):
    key = f"exports/{org.org_id}/{export_id}.csv"
    obj = stack.client("s3").get_object(Bucket=stack.resources["ExportsBucket"], Key=key)
    return obj["Body"].read()


def _queued(org, kind="do_not_contact"):
    """An export recorded and queued but not yet run."""
    return container.export_service().request(org.org_id, kind)


def _entries(org, count):
    """`count` do-not-contact entries (the worker's paging and parts do not depend on the kind; entries are
    cheaper to make than contacts, which set segment evaluation going)."""
    body = "identifier\n" + "\n".join(f"+62812{i:08d}" for i in range(count))
    report = org.client.post("/orgs/c/do-not-contact/import", content=body, headers={"Content-Type": "text/csv"})
    assert report.json()["summary"]["added"] == count, report.text
    return {e["id"] for e in _all_entries(org)}


def _all_entries(org):
    seen, cursor = [], None
    while True:
        body = org.client.get("/orgs/c/do-not-contact", params={"take": 100, **({"cursor": cursor} if cursor else {})})
        seen.extend(body.json()["items"])
        cursor = body.json()["next_cursor"]
        if not cursor:
            return seen


def _messages(stack):
    """Messages waiting on the export queue (taken off it)."""
    sqs = stack.client("sqs")
    url = stack.resources["ExportQueue"]
    found = []
    while True:
        batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not batch:
            return found
        for message in batch:
            found.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


@pytest.fixture
def worker(monkeypatch):
    """Build an export worker with small parts (S3, here moto, is told to accept parts of 1 KiB)."""
    from audience.exports.repository import ExportsRepository
    from audience.exports.storage import ExportFiles, ExportJobs
    from audience.exports.worker import ExportWorker
    from audience.orgs.repository import OrgsRepository

    monkeypatch.setattr("moto.s3.models.S3_UPLOAD_PART_MIN_SIZE", 1024)

    def build(part_size=2048, min_part_size=1024):
        settings = get_settings()
        return ExportWorker(
            ExportsRepository(settings.contacts_table),
            ExportFiles(settings.exports_bucket),
            ExportJobs(settings.export_queue_url),
            container.contact_service(),
            container.dnc_service,
            OrgsRepository(settings.orgs_table),
            part_size=part_size,
            min_part_size=min_part_size,
        )

    return build


class _Clock:
    """Milliseconds left in the invocation: plenty for the first `calls` checks, then `then`."""

    def __init__(self, calls, then):
        self.calls, self.then = calls, then

    def __call__(self):
        self.calls -= 1
        return 900_000 if self.calls >= 0 else self.then


def test_a_long_export_streams_parts_and_hands_over_to_continuations(org, stack, worker):
    run = worker()
    ids = _entries(org, 350)
    export = _queued(org)
    assert _messages(stack) == [{"export_id": export.id, "org_id": org.org_id}]

    # Time runs short after the first page (a part of its own): the run hands over at that boundary.
    assert run.process({"org_id": org.org_id, "export_id": export.id}, _Clock(0, 60_000)) == "continued"
    saved = container.export_service().get(org.org_id, export.id)[0]
    assert (saved.status, saved.step, saved.checkpoint.rows, len(saved.checkpoint.parts)) == ("running", 1, 100, 1)
    (message,) = _messages(stack)
    assert message == {"export_id": export.id, "org_id": org.org_id, "run": saved.run}

    # Two workers taking copies of one continuation at once: only one wins the next step.
    exports = run._exports
    assert exports.claim(org.org_id, export.id, run=saved.run, step=1) is True
    assert exports.claim(org.org_id, export.id, run=saved.run, step=1) is False

    hand_overs = 1
    while (outcome := run.process(message, _Clock(0, 60_000))) == "continued":
        (message,) = _messages(stack)
        hand_overs += 1
    assert (outcome, hand_overs) == ("done", 3)
    done, download = container.export_service().get(org.org_id, export.id)
    assert (done.status, done.rows, done.checkpoint) == ("done", 350, None)
    assert download is not None
    rows = list(csv.reader(io.StringIO(_object(stack, org, export.id).decode("utf-8-sig"), newline="")))
    assert rows[0][:3] == ["id", "identifier", "identifier_type"]
    assert sorted(r[0] for r in rows[1:]) == sorted(ids)  # every entry exactly once, across four parts


def test_a_hand_over_before_a_whole_part_goes_back_to_the_last_boundary(org, stack, worker):
    run = worker(part_size=1024 * 1024, min_part_size=512 * 1024)
    _entries(org, 150)
    export = _queued(org)
    _messages(stack)
    # Under the hard margin from the start and no part written: the continuation starts from the top.
    assert run.process({"org_id": org.org_id, "export_id": export.id}, lambda: 5_000) == "continued"
    assert container.export_service().get(org.org_id, export.id)[0].checkpoint == Checkpoint()
    (message,) = _messages(stack)
    assert run.process(message, lambda: 900_000) == "done"
    text = _object(stack, org, export.id).decode("utf-8")
    assert text.startswith("\ufeffid,")
    assert text.count("\ufeff") == 1
    assert len(list(csv.reader(io.StringIO(text, newline="")))) == 151


def test_a_done_export_is_not_redone_and_a_redelivered_start_restarts_from_scratch(org, stack, worker):
    run = worker()
    _entries(org, 150)
    export = _queued(org)
    (start,) = _messages(stack)
    assert run.process(start, _Clock(0, 60_000)) == "continued"
    first_run = container.export_service().get(org.org_id, export.id)[0].run
    (continuation,) = _messages(stack)

    # The start message comes again (the first attempt's result was lost): a new run, from scratch.
    assert run.process(start, lambda: 900_000) == "done"
    done = container.export_service().get(org.org_id, export.id)[0]
    assert done.run != first_run
    assert done.rows == 150
    content = _object(stack, org, export.id)
    # The first run's continuation, and the start message once more, find the export done.
    assert run.process(continuation, lambda: 900_000) == "skipped"
    assert run.process(start, lambda: 900_000) == "skipped"
    assert _object(stack, org, export.id) == content


def test_a_continuation_of_a_superseded_run_does_nothing(org, stack, worker):
    run = worker()
    _entries(org, 150)
    export = _queued(org)
    (start,) = _messages(stack)
    assert run.process(start, _Clock(0, 60_000)) == "continued"
    (old,) = _messages(stack)
    assert run.process(start, _Clock(0, 60_000)) == "continued"  # redelivered: run two
    (new,) = _messages(stack)
    assert old["run"] != new["run"]
    assert run.process(old, lambda: 900_000) == "stale"
    assert run.process(new, lambda: 900_000) == "done"
    assert container.export_service().get(org.org_id, export.id)[0].rows == 150


def test_the_last_failed_attempt_marks_the_export_failed_and_reports_the_record(org, stack, monkeypatch):
    export = _queued(org)
    (message,) = _messages(stack)
    worker = container.export_worker()

    def broken(*_, **__):
        raise RuntimeError("S3 is having a bad day")

    monkeypatch.setattr(worker, "_write", broken)
    event = json.loads((EVENTS / "export_start.json").read_text())
    record = event["Records"][0]
    record["body"] = json.dumps(message)
    # The whole batch failed: Powertools raises, so Lambda retries it (and counts an error).
    with pytest.raises(BatchProcessingError):
        stack.invoke("ExportFunction", event)
    assert container.export_service().get(org.org_id, export.id)[0].status == "running"  # retried later
    record["attributes"]["ApproximateReceiveCount"] = "3"
    with pytest.raises(BatchProcessingError):
        stack.invoke("ExportFunction", event)
    failed = container.export_service().get(org.org_id, export.id)[0]
    assert failed.status == "failed"
    assert "after 3 attempts" in failed.error


def test_a_filter_that_no_longer_holds_fails_the_export_without_retries(org, stack):
    export = container.export_service().request(org.org_id, "contacts", filters={"status": "SUBSCRIBED"})
    (message,) = _messages(stack)
    table = boto3.resource("dynamodb").Table(stack.resources["ContactsTable"])
    table.update_item(
        Key={"pk": f"O#{org.org_id}#EXPORTS", "sk": export.id},
        UpdateExpression="SET filters = :f",
        ExpressionAttributeValues={":f": {"status": "GONE"}},
    )
    assert container.export_worker().process(message, lambda: 900_000) == "failed"
    failed = org.client.get(f"/orgs/c/exports/{export.id}").json()
    assert failed["status"] == "failed"
    assert "status" in failed["error"]


def test_sample_events_and_stray_messages_are_handled(stack):
    for name in ("export_start.json", "export_continue.json"):
        event = json.loads((EVENTS / name).read_text())
        assert stack.invoke("ExportFunction", event) == {"batchItemFailures": []}  # the export does not exist
    # In a batch, a stray message fails on its own (retried, then dead-lettered); the others go through.
    event = json.loads((EVENTS / "export_start.json").read_text())
    stray = {**event["Records"][0], "messageId": "stray", "body": json.dumps({"hello": "world"})}
    event["Records"].append(stray)
    assert stack.invoke("ExportFunction", event) == {"batchItemFailures": [{"itemIdentifier": "stray"}]}


def test_the_do_not_contact_export_imports_back_unchanged(org, stack):
    for body in (
        {"identifier": "+6281200000001", "source": "user_message"},
        {"identifier": "b@x.io", "channel": "email", "sender": "news@shop.io", "source": "bounce"},
        {"identifier": "777", "channel": "telegram"},
    ):
        org.client.post("/orgs/c/do-not-contact", json=body)
    export = _export(org, stack, kind="do_not_contact")
    assert (export["status"], export["rows"]) == ("done", 3)
    data = _object(stack, org, export["id"])
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    assert rows[0] == ["id", "identifier", "identifier_type", "channel", "sender", "source", "added_at"]
    assert rows[3][1:6] == ["'+6281200000001", "phone", "", "", "user_message"]
    before = org.client.get("/orgs/c/do-not-contact").json()["items"]

    for entry in before:
        org.client.delete(f"/orgs/c/do-not-contact/{entry['id']}")
    report = org.client.post("/orgs/c/do-not-contact/import", content=data, headers={"Content-Type": "text/csv"})
    assert report.json()["summary"]["added"] == 3, report.text
    after = org.client.get("/orgs/c/do-not-contact").json()["items"]
    same = ("identifier", "identifier_type", "channel", "sender", "source")
    assert sorted(tuple(e[k] for k in same) for e in after) == sorted(tuple(e[k] for k in same) for e in before)
