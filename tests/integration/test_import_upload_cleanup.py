"""A completed import's uploaded file (people's rows) is deleted even when the first try fails after the
import was recorded as completed: the state machine retries the finish step, which deletes it then."""

from __future__ import annotations

from typing import Any

import pytest

from audience.imports import storage
from tests.integration.test_imports_api import _csv, _import


def test_the_upload_is_deleted_by_the_retried_finish_when_its_first_deletion_failed(
    stack: Any, org: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given S3 failing the first deletion of an upload (after the import is recorded as completed)
    delete_prefix = storage.ImportFiles.delete_prefix
    failed: list[str] = []

    def flaky(self: Any, prefix: str) -> None:
        if prefix.endswith("/upload") and not failed:
            failed.append(prefix)
            raise RuntimeError("S3 was unavailable")
        delete_prefix(self, prefix)

    monkeypatch.setattr(storage.ImportFiles, "delete_prefix", flaky)
    # When a file is imported to the end
    imp = _import(stack, org, _csv([["name", "email"], ["Ana", "ana@example.com"]]), "people.csv")
    # Then the import completed, the deletion failed once, and the upload is gone all the same
    assert imp["status"] == "completed"
    assert failed == [storage.upload_key(org.org_id, imp["id"])]
    bucket = stack.client("s3").list_objects_v2(Bucket=stack.resources["ImportsBucket"], Prefix=failed[0])
    assert bucket.get("Contents", []) == []
