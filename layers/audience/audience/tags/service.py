"""Tag use cases: the registry with contact counts, tagging contacts (one, many, a segment's members), and
renaming (merging) or deleting a tag on every contact that has it, in the background."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from audience import clock, ids
from audience.contacts.models import MAX_TAGS, Contact
from audience.contacts.repository import ContactsRepository
from audience.contacts.service import ContactService
from audience.contacts.service import check_tags as contact_tags  # the one definition of a valid tag
from audience.errors import ConcurrentUpdateError, ConflictError, NotFoundError, ValidationError
from audience.segments.evaluation import Tally
from audience.segments.jobs import TAG, JobStarter, execution_name
from audience.segments.repository import SegmentsRepository
from audience.tags.models import DELETING, MAX_DESCRIPTION, MAX_TAGS_PER_ORG, READY, RENAMING, Tag
from audience.tags.repository import TagsRepository

ADD, REMOVE, RENAME, DELETE = "add", "remove", "rename", "delete"
CHANGED, UNCHANGED, NOT_FOUND, INVALID, CONFLICT = "changed", "unchanged", "not_found", "invalid", "conflict"
RESULTS = (CHANGED, UNCHANGED, NOT_FOUND, INVALID, CONFLICT)
MAX_BULK = 1000
_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")
_CONTACT_ID = re.compile(r"^ct_[0-9a-z]{26}$")
_SEGMENT_ID = re.compile(r"^sg_[0-9a-z]{26}$")
_WORKERS = 8

TagView = tuple[Tag, int]  # a tag and how many contacts have it
Edit = Callable[[list[str]], list[str]]


def check_name(value: Any, field: str = "name") -> str:
    """A tag name as contacts store it (trimmed) under the same rules; anything else is a 422 on `field`."""
    try:
        (name,) = contact_tags([value])
    except ValidationError:
        raise ValidationError.for_field(field, value, "a tag is 1 to 64 printable characters") from None
    return name


class TagService:
    """Tags of an org; every method takes the org id the caller is authorised for."""

    def __init__(
        self,
        tags: TagsRepository,
        contacts: ContactsRepository,
        contact_service: ContactService,
        segments: SegmentsRepository,
        jobs: Callable[[], JobStarter],
    ) -> None:
        self._tags = tags
        self._contacts = contacts
        self._contact_service = contact_service
        self._segments = segments
        self._jobs = jobs

    # -- registry -----------------------------------------------------------------------------------

    def list(self, org_id: str, prefix: str | None = None) -> list[TagView]:
        """Registered tags and tags that are on contacts without being registered, each with its number of
        contacts (from the maintained counters), sorted by name; `prefix` keeps names that start with it
        (without regard to case)."""
        counts = self._counts(org_id)
        found = {tag.name: tag for tag in self._tags.list(org_id)}
        for name, count in counts.items():
            if count > 0 and name not in found:
                found[name] = Tag(org_id, name, registered=False)
        folded = prefix.casefold() if prefix else None
        views = [
            (tag, max(0, counts.get(name, 0)))
            for name, tag in found.items()
            if folded is None or name.casefold().startswith(folded)
        ]
        return sorted(views, key=lambda view: (view[0].name.casefold(), view[0].name))

    def get(self, org_id: str, name: str) -> TagView:
        """A registered tag, or one that contacts have; NotFoundError otherwise."""
        name = check_name(name)
        tag = self._tags.get(org_id, name)
        count = max(0, self._counts(org_id).get(name, 0))
        if tag is None:
            if count == 0:
                raise NotFoundError(f"tag {name!r} not found")
            tag = Tag(org_id, name, registered=False)
        return tag, count

    def create(self, org_id: str, data: dict[str, Any]) -> TagView:
        """Register a tag (it may already be on contacts); ConflictError when it is registered already."""
        name = check_name(data.get("name"))
        now = clock.now_iso()
        tag = Tag(
            org_id,
            name,
            description=_description(data.get("description")),
            color=_color(data.get("color")),
            version=1,
            created_at=now,
            updated_at=now,
        )
        self._check_room(org_id, name)
        self._tags.create(tag)
        return tag, max(0, self._counts(org_id).get(name, 0))

    def update(self, org_id: str, name: str, changes: dict[str, Any]) -> TagView:
        """Change the description or color; a new `name` renames the tag on every contact in the background
        (merging into the tag of that name if there is one). A tag that is on contacts without being
        registered is registered by its first update."""
        current, count = self.get(org_id, name)
        if "name" in changes and changes["name"] is None:
            raise ValidationError.for_field("name", None, "a tag needs a name")
        new_name = check_name(changes["name"]) if "name" in changes else current.name
        if current.state == RENAMING and current.renaming_to == new_name:
            return self.get(org_id, new_name)  # the same rename, asked again: it is under way
        if current.state != READY:
            raise _busy(current)
        if new_name != current.name:
            return self._rename(current, count, new_name, changes)
        now = clock.now_iso()
        updated = _edited(current, changes)
        if updated == current and current.registered:
            return current, count
        if current.registered:
            self._tags.write([(replace(updated, version=current.version + 1, updated_at=now), current.version)])
        else:
            self._check_room(org_id, current.name)
            self._tags.write([(replace(updated, registered=True, version=1, created_at=now, updated_at=now), None)])
        return self.get(org_id, current.name)

    def delete(self, org_id: str, name: str) -> TagView | None:
        """Delete the tag from the registry and from every contact. None when no contact has it (done at
        once); otherwise the tag, `deleting` until the background job has removed it from its contacts."""
        current, count = self.get(org_id, name)
        if current.state == DELETING:
            return current, count  # asked again: already under way
        if current.state != READY:
            raise _busy(current)
        if count == 0:
            self._tags.write([], deletes=[current])
            self._tags.drop_counter_if_zero(org_id, current.name)
            return None
        job = self._job(org_id, DELETE, current.name, source="tag")
        now = clock.now_iso()
        marked = replace(
            current,
            state=DELETING,
            job_id=job["job_id"],
            job=execution_name(job),
            registered=True,
            version=current.version + 1,
            created_at=current.created_at or now,
            updated_at=now,
        )
        self._tags.write([(marked, current.version if current.registered else None)])
        self._start(job, [(current, marked)])
        return marked, count

    # -- tagging contacts ---------------------------------------------------------------------------

    def change_contacts(self, org_id: str, name: str, contact_ids: list[str], *, add: bool) -> list[dict[str, str]]:
        """Add (or remove) the tag on up to 1,000 contacts, each reported as changed, unchanged, not_found,
        invalid (it would exceed a contact's 30 tags) or conflict (changed by others meanwhile)."""
        name = check_name(name)
        if not contact_ids or len(contact_ids) > MAX_BULK:
            raise ValidationError.for_field(
                "contact_ids", f"{len(contact_ids)} ids", f"must name 1 to {MAX_BULK} contacts"
            )
        if add:
            self._check_takes_contacts(org_id, [name])
        edit = _adder([name]) if add else _remover(name)

        def one(contact_id: str) -> dict[str, str]:
            result, message = self._change_one(org_id, contact_id, edit)
            return {"id": contact_id, "result": result, **({"message": message} if message else {})}

        return _parallel(one, list(dict.fromkeys(contact_ids)))

    def change_segment(self, org_id: str, name: str, segment_id: str, *, add: bool) -> dict[str, Any]:
        """Start a background job adding (or removing) the tag on every member of a segment; returns the job
        (with its execution name as `name`)."""
        name = check_name(name)
        if not _SEGMENT_ID.match(segment_id):
            raise NotFoundError(f"segment {segment_id} not found")
        self._segments.get_segment(org_id, segment_id)  # another org's, unknown or being deleted: 404
        if add:
            self._check_takes_contacts(org_id, [name])
        job = self._job(org_id, ADD if add else REMOVE, name, source="segment", segment_id=segment_id)
        self._jobs().start(job)
        return {**job, "name": execution_name(job)}

    def add_to_contact(self, org_id: str, contact_id: str, tags: list[Any]) -> Contact:
        """Give one contact these tags (those it has stay); 422 when it would exceed 30 tags."""
        names = list(dict.fromkeys(check_name(tag, "tags") for tag in tags))
        if not names or len(names) > MAX_TAGS:
            raise ValidationError.for_field("tags", f"{len(names)} tags", f"must name 1 to {MAX_TAGS} tags")
        self._check_takes_contacts(org_id, names)
        return self._edit_contact(org_id, contact_id, _adder(names))

    def remove_from_contact(self, org_id: str, contact_id: str, name: str) -> Contact:
        """Take a tag off one contact (nothing changes if it does not have it)."""
        return self._edit_contact(org_id, contact_id, _remover(check_name(name)))

    # -- the background job (segments/jobs.py runs it shard by shard) ---------------------------------

    def job_step(self, job: dict[str, Any]) -> Callable[[list[str]], Tally] | None:
        """The change a tag job makes to a batch of contact ids; None when the job has nothing left to do
        (its rename or delete finished or was replaced, or the tag it adds is being renamed or deleted)."""
        org_id, op, name = job["org_id"], job["op"], job["tag"]
        tag = self._tags.get(org_id, name)
        if op in (RENAME, DELETE) and (tag is None or tag.job_id != job["job_id"]):
            return None
        if op == ADD and tag is not None and not tag.takes_contacts:
            return None
        if op == ADD:
            edit = _adder([name])
        elif op == RENAME:
            edit = _renamer(name, job["new_tag"])
        else:
            edit = _remover(name)

        def step(contact_ids: list[str]) -> Tally:
            results = _parallel(lambda cid: self._change_one(org_id, cid, edit)[0], contact_ids)
            if CONFLICT in results:  # the part is retried from its last cursor; what was done stays done
                raise ConcurrentUpdateError("contacts of a tag job are being changed by others; retry")
            changed = results.count(CHANGED)
            return Tally(
                evaluated=len(contact_ids),
                added=changed if op in (ADD, RENAME) else 0,
                removed=changed if op in (REMOVE, DELETE, RENAME) else 0,
                missing=results.count(NOT_FOUND),
            )

        return step

    def finish_job(self, job: dict[str, Any]) -> None:
        """Once every contact is done: drop the old name of a rename or the deleted tag from the registry,
        and mark the tag a rename merged into ready. Repeating it changes nothing."""
        org_id, op, name, job_id = job["org_id"], job["op"], job["tag"], job["job_id"]
        if op not in (RENAME, DELETE):
            return
        self._tags.delete_for_job(org_id, name, job_id)
        if op == RENAME:
            self._tags.release(org_id, job["new_tag"], job_id, clock.now_iso())
        self._tags.drop_counter_if_zero(org_id, name)

    # -- internals ----------------------------------------------------------------------------------

    def _counts(self, org_id: str) -> dict[str, int]:
        return {name[2:]: n for name, n in self._contacts.counters(org_id).items() if name.startswith("t#")}

    def _check_room(self, org_id: str, name: str) -> None:
        registered = [t for t in self._tags.list(org_id) if t.state != DELETING]
        if len(registered) >= MAX_TAGS_PER_ORG:
            raise ValidationError.for_field("name", name, f"an org registers at most {MAX_TAGS_PER_ORG:,} tags")

    def taking_contacts(self, org_id: str, names: list[str]) -> list[str]:
        """The tags of `names` that may go on a contact now: a tag being deleted or renamed is left out
        (what _check_takes_contacts refuses with 409), an unregistered one kept. One batch read."""
        if not names:
            return []
        found = self._tags.get_many(org_id, names)
        return [name for name in names if name not in found or found[name].takes_contacts]

    def _check_takes_contacts(self, org_id: str, names: Iterable[str]) -> None:
        for tag in self._tags.get_many(org_id, names).values():
            if not tag.takes_contacts:
                raise _busy(tag)

    def _rename(self, current: Tag, count: int, new_name: str, changes: dict[str, Any]) -> TagView:
        org_id = current.org_id
        target = self._tags.get(org_id, new_name)
        if target is not None and target.state != READY:
            raise _busy(target)
        now = clock.now_iso()
        if target is None:
            if not current.registered:
                self._check_room(org_id, new_name)
            merged = Tag(
                org_id,
                new_name,
                description=current.description,
                color=current.color,
                version=1,
                created_at=current.created_at or now,
                updated_at=now,
            )
        else:  # a merge: the tag renamed into keeps its own description and color unless they are sent
            merged = replace(target, version=target.version + 1, updated_at=now)
        merged = _edited(merged, changes)
        expected = target.version if target is not None else None
        if count == 0:  # no contact has the tag: only the registry changes
            self._tags.write([(merged, expected)], deletes=[current])
            self._tags.drop_counter_if_zero(org_id, current.name)
            return self.get(org_id, new_name)
        job = self._job(org_id, RENAME, current.name, source="tag", new_tag=new_name)
        held = {"state": RENAMING, "job_id": job["job_id"], "job": execution_name(job)}
        source = replace(
            current,
            renaming_to=new_name,
            registered=True,
            version=current.version + 1,
            created_at=current.created_at or now,
            updated_at=now,
            **held,
        )
        merged = replace(merged, renaming_from=current.name, **held)
        self._tags.write([(source, current.version if current.registered else None), (merged, expected)])
        self._start(job, [(current, source), (target, merged)])
        return self.get(org_id, new_name)

    def _job(self, org_id: str, op: str, name: str, *, source: str, **more: str) -> dict[str, Any]:
        # The ulid makes each request its own job; a redelivered start of the same job dict has the same
        # execution name, and Step Functions refuses to run it twice.
        return {"kind": TAG, "org_id": org_id, "op": op, "tag": name, **more, "source": source, "job_id": ids.ulid()}

    def _start(self, job: dict[str, Any], written: list[tuple[Tag | None, Tag]]) -> None:
        """Start the job; if that fails, put back the registry items marked for it, then re-raise."""
        try:
            self._jobs().start(job)
        except Exception:
            for before, marked in written:
                if before is None or not before.registered:
                    self._tags.delete_for_job(marked.org_id, marked.name, job["job_id"])
                else:
                    self._tags.write([(replace(before, version=marked.version + 1), marked.version)])
            raise

    def _change_one(self, org_id: str, contact_id: str, edit: Edit) -> tuple[str, str | None]:
        """Apply `edit` to one contact's tags through ContactService.update, so that counters, facets,
        activity and the segment stream follow."""
        if not _CONTACT_ID.match(contact_id):
            return NOT_FOUND, None
        try:
            current = self._contacts.get(org_id, contact_id)
            tags = edit(current.tags)
            if tags == current.tags:
                return UNCHANGED, None
            if len(tags) > MAX_TAGS:
                return INVALID, f"the contact has {len(current.tags)} tags; a contact holds at most {MAX_TAGS}"
            # The edit is applied to the contact as read inside the update, so a concurrent change stays.
            self._contact_service.update(org_id, contact_id, lambda contact: {"tags": edit(contact.tags)})
        except NotFoundError:
            return NOT_FOUND, None
        except ValidationError as error:
            return INVALID, error.message
        except ConcurrentUpdateError as error:
            return CONFLICT, error.message
        return CHANGED, None

    def _edit_contact(self, org_id: str, contact_id: str, edit: Edit) -> Contact:
        current = self._contacts.get(org_id, contact_id)
        tags = edit(current.tags)
        if tags == current.tags:
            return current
        if len(tags) > MAX_TAGS:
            raise ValidationError.for_field(
                "tags", f"{len(tags)} tags", f"the contact would have {len(tags)} tags; at most {MAX_TAGS}"
            )
        return self._contact_service.update(org_id, contact_id, lambda contact: {"tags": edit(contact.tags)})


# -- pure helpers -----------------------------------------------------------------------------------


def _adder(names: list[str]) -> Edit:
    return lambda tags: tags + [n for n in names if n not in tags]


def _remover(name: str) -> Edit:
    return lambda tags: [t for t in tags if t != name]


def _renamer(old: str, new: str) -> Edit:
    """The new name in the old one's place; just the old one dropped when the contact has both."""

    def edit(tags: list[str]) -> list[str]:
        if old not in tags:
            return tags
        if new in tags:
            return [t for t in tags if t != old]
        return [new if t == old else t for t in tags]

    return edit


def _edited(tag: Tag, changes: dict[str, Any]) -> Tag:
    updated = replace(tag)
    if "description" in changes:
        updated.description = _description(changes["description"])
    if "color" in changes:
        updated.color = _color(changes["color"])
    return updated


def _description(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_DESCRIPTION:
        raise ValidationError.for_field("description", value, f"must be at most {MAX_DESCRIPTION} characters")
    return value.strip() or None


def _color(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _COLOR.match(value):
        raise ValidationError.for_field("color", value, "must be a color like #1a2b3c")
    return value.lower()


def _busy(tag: Tag) -> ConflictError:
    if tag.state == DELETING:
        doing = "being deleted"
    elif tag.renaming_to is not None:
        doing = f"being renamed to {tag.renaming_to!r}"
    else:
        doing = f"taking the contacts of {tag.renaming_from!r}"
    return ConflictError(f"tag {tag.name!r} is {doing}; retry when that is done", tag=tag.name, job=tag.job)


def _parallel(fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
    if len(items) <= 1:
        return [fn(i) for i in items]
    with ThreadPoolExecutor(max_workers=min(_WORKERS, len(items))) as pool:
        return list(pool.map(fn, items))
