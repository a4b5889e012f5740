import pytest

from transcribe_common import layout


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\system.ini", "system.ini"),
        ("réunion d'équipe.mp3", "réunion d_équipe.mp3"),
        ("..", "input"),
        ("", "input"),
        (None, "input"),
        ("a\x00b.wav", "a_b.wav"),
    ],
)
def test_safe_filename(name: str | None, safe: str) -> None:
    assert layout.safe_filename(name) == safe


def test_inbox_job_ids_are_stable_and_tell_versions_apart() -> None:
    first = layout.inbox_job_id("inbox", "a.mp3", "etag1")
    assert first == layout.inbox_job_id("inbox", "a.mp3", "etag1")
    assert first != layout.inbox_job_id("inbox", "a.mp3", "etag2")
    assert layout.is_job_id(first)


def test_only_manifest_keys_name_a_job() -> None:
    job_id = layout.new_job_id()
    assert layout.job_id_of_manifest(layout.manifest_key(job_id)) == job_id
    assert layout.job_id_of_manifest(layout.status_key(job_id)) is None
    assert layout.job_id_of_manifest("nested/" + layout.manifest_key(job_id)) is None
    assert layout.beside_key("talks/my talk.mp4", "srt") == "talks/my talk.srt"


def test_job_ids_made_in_one_second_sort_in_the_order_they_were_made_and_say_when() -> None:
    made = [layout.new_job_id(1_765_000_000 + n / 100) for n in range(50)]
    assert made == sorted(made)
    assert abs(layout.made_at(made[7]).timestamp() - (1_765_000_000 + 0.07)) < 1 / 65536 + 1e-6
    assert layout.dated_floor(1_765_000_000) <= made[0]
    inbox = layout.inbox_job_id("transcribe-inbox", "talks/a.mp3", "etag")
    with pytest.raises(ValueError, match="not a dated job id"):
        layout.made_at(inbox)  # an inbox job's id says nothing of when
