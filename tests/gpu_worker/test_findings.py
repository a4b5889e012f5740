"""What a transcript's reader is told about it (``gpu_worker.findings``), sentence by sentence:
a pure function of the transcript, its options and what the file declared."""

from __future__ import annotations

from gpu_worker.findings import findings
from gpu_worker.transcript import Segment, Transcript
from transcribe_common.models import JobOptions

NO_SPEECH = "no speech was found in the audio: the transcript is empty"


def transcript(  # type: ignore[no-untyped-def]
    text: str,
    *,
    language: str | None = None,
    probability: float = 0.99,
    duration: float = 10.0,
    speech: float | None = 0.0,
    **options: object,
):
    segments = [Segment(id=0, start=0.0, end=duration, text=text)] if text else []
    return Transcript(
        language=language or "th", language_probability=probability, duration=duration, segments=segments,
        options=JobOptions(language=language, **options), model="base", speech_seconds=speech,  # type: ignore[arg-type]
    )  # fmt: skip


def test_a_weak_detection_with_an_empty_transcript_names_the_language_it_thought_it_heard() -> None:
    said = findings(transcript("", probability=0.56), declared=10.0, confidence_min=0.95)
    assert said == [
        "the language was detected as 'th' with a probability of only 0.56, below LANGUAGE_CONFIDENCE_MIN (0.95); "
        "the transcript may be in the wrong language: if so, name the language in 'language'",
        f"{NO_SPEECH} (the language was detected as 'th'; if there is speech, name its language)",
    ]


def test_an_empty_transcript_in_a_language_named_or_on_an_english_only_model_says_only_that() -> None:
    assert findings(transcript("", language="id"), declared=None, confidence_min=0.95) == [NO_SPEECH]
    assert findings(transcript(""), declared=None, confidence_min=0.95, multilingual=False) == [NO_SPEECH]


def test_a_sure_detection_of_a_full_file_says_nothing_and_a_short_decode_says_the_file_may_be_truncated() -> None:
    assert findings(transcript("Selamat pagi."), declared=10.5, confidence_min=0.95) == []
    assert findings(transcript("Selamat pagi.", duration=5.0), declared=10.0, confidence_min=0.95) == [
        "only 5.0 s of audio could be decoded, of the 10.0 s the file declares: the file may be truncated"
    ]


def test_speech_the_model_wrote_nothing_from_is_not_called_no_speech() -> None:
    """Issue 34, finding 3: VAD heard speech, the decode gave no text (a translation that came out
    empty, say). The sentence says so, and what to try."""
    said = findings(transcript("", language="id", speech=22.8, task="translate"), declared=None, confidence_min=0.95)
    assert said == [
        "the model wrote no text from 22.8 s of speech (VAD heard it): the transcript is empty; "
        "translating from 'id' gave nothing: try task=transcribe, or a larger model"
    ]
    [said] = findings(transcript("", language="en", speech=3.1), declared=None, confidence_min=0.95)
    assert said.startswith("the model wrote no text from 3.1 s of speech (VAD heard it)")
    assert "check that the speech is in 'en'" in said
    [said] = findings(transcript("", language="en", speech=None, vad_filter=False), declared=None, confidence_min=0.95)
    assert said.startswith("the model wrote no text from the audio: the transcript is empty")


def test_a_translation_that_is_not_english_says_so() -> None:
    """What base wrote for the Indonesian fixture asked to translate it (a new user saw it finish
    with no warning): the speech written down, not translated."""
    indonesian = (
        "Salamat pagi semuanya. Hari ni kita akan membahas kecana kejahun tukuran pepan, timpendualan sudat "
        "melihatkan laporan tentang pelanggan paru di Jakarta dan Suramaya."
    )
    [said] = findings(transcript(indonesian, language="id", task="translate"), declared=None, confidence_min=0.95)
    assert said.startswith("task=translate, but the text does not read as English: the model (base) may have")
    english = "Good morning everyone. Today we will discuss the plan for next month, and the sales team has a report."
    assert findings(transcript(english, language="id", task="translate"), declared=None, confidence_min=0.95) == []
    assert findings(transcript(indonesian, language="id"), declared=None, confidence_min=0.95) == []  # transcribed
    assert (
        findings(transcript("Terima kasih.", language="id", task="translate"), declared=None, confidence_min=0.95) == []
    )
