"""Issue 31, finding 6 (a folder options file silences the inbox): a deeply nested
``.transcribe.json`` at the inbox's root made every later drop fail in the router with
RecursionError, with no job and no note beside it, the events sent to dead letters; a 118 MB one
grew the router from 62 to 377 MB. On the embedded stack: each drop under such a file fails with
its note beside it, the file is never read whole, and drops elsewhere go on."""

from __future__ import annotations

import pytest

from tests.conftest import Stack
from tests.helpers import SPEECH, Receiver
from tests.test_truth import drop

CASES = {
    "nested": (b"[" * 30_000 + b"]" * 30_000, "is not valid JSON: it is nested too deeply"),  # 60 KB
    "huge": (b'{"language": "en", "pad": "' + b"x" * (2 * 2**20) + b'"}', "is 2,097,181 bytes; at most 65,536"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_options_file_fails_only_the_drops_under_it_each_with_its_note(
    stack: Stack, receiver: Receiver, case: str
) -> None:
    content, said = CASES[case]
    folder = stack.inbox / f"options-{case}"
    folder.mkdir()
    (folder / ".transcribe.json").write_bytes(content)
    job_id = drop(stack, f"options-{case}/talk.mp3", SPEECH / "upload.mp3")
    payload = receiver.wait_for(job_id)["json"]
    assert payload["status"] == "failed", stack.log_tail()
    assert payload["error"] == f"the folder's .transcribe.json {said}"
    assert payload["error"] in (folder / "talk.error.txt").read_text()
    elsewhere = drop(stack, f"options-{case}-fine/talk.mp3", SPEECH / "upload.mp3")
    assert receiver.wait_for(elsewhere)["json"]["status"] == "finished"
