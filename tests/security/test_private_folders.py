"""Issue 31: the embedded stack's buckets and scratch folder were 0755 and their files 0644, so any
user of the machine could read every tenant's uploads and results, and the manifests, whose
callback URLs may hold credentials. Only the inbox is for other people; the rest is the owner's."""

from __future__ import annotations

import os

from tests.conftest import INBOX_BUCKET, JOBS_BUCKET, Stack
from tests.helpers import SPEECH
from tests.test_truth import drop
from transcribe_common.store.local import META_DIR, TMP_DIR


def test_only_the_inbox_is_open_to_the_other_users_of_the_machine(stack: Stack, receiver) -> None:  # type: ignore[no-untyped-def]
    job_id = drop(stack, "private/talk.mp4", SPEECH / "inbox.mp4", {"output": "json"})
    assert receiver.wait_for(job_id)["json"]["status"] == "finished", stack.log_tail()
    buckets = stack.data / "buckets"
    private = [
        buckets / JOBS_BUCKET,
        buckets / META_DIR,
        buckets / TMP_DIR,
        stack.data / "scratch",
    ]
    opened = {str(path.relative_to(stack.data)): oct(path.stat().st_mode & 0o777) for path in private}
    assert {name: mode for name, mode in opened.items() if mode != oct(0o700)} == {}
    umask = os.umask(0)
    os.umask(umask)
    assert (buckets / INBOX_BUCKET).stat().st_mode & 0o777 == 0o777 & ~umask  # as a folder made by hand
