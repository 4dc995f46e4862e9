"""A registered tag of an org."""

from __future__ import annotations

from dataclasses import dataclass

# A tag is `ready`, or has a background job changing every contact that carries it: `renaming` (on the old
# name, with `renaming_to`, and on the name it merges into, with `renaming_from`) or `deleting`.
READY, RENAMING, DELETING = "ready", "renaming", "deleting"

MAX_TAGS_PER_ORG = 1000
MAX_DESCRIPTION = 500


@dataclass(slots=True)
class Tag:
    org_id: str
    name: str
    description: str | None = None
    color: str | None = None  # "#rrggbb", lower case
    state: str = READY
    renaming_to: str | None = None
    renaming_from: str | None = None
    job_id: str | None = None  # the job renaming or deleting the tag on contacts
    job: str | None = None  # that job's execution name
    # False for a tag that is on contacts without having been registered (it has no registry item).
    registered: bool = True
    version: int = 0
    created_at: str | None = None
    updated_at: str | None = None

    @property
    def takes_contacts(self) -> bool:
        """Whether contacts may be given the tag now: not while it is deleted or renamed away."""
        return self.state == READY or (self.state == RENAMING and self.renaming_from is not None)
