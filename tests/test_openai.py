"""The official ``openai`` Python client, pointed at the stack, transcribes as it would at OpenAI."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
import srt
import webvtt

from tests.conftest import SPEECH, Stack
from tests.helpers import speech_text, wer
from tests.test_truth import ffmpeg

REFERENCE = speech_text("upload")


@pytest.fixture(scope="module")
def client(stack: Stack) -> openai.OpenAI:
    # No API keys on the test stack; the client insists on one all the same.
    return openai.OpenAI(base_url=f"{stack.url}/v1", api_key="not-needed", max_retries=0, timeout=120)


def test_json_is_the_default_and_holds_the_text(client: openai.OpenAI) -> None:
    with (SPEECH / "upload.mp3").open("rb") as audio:
        result = client.audio.transcriptions.create(model="whisper-1", file=audio)
    assert isinstance(result, openai.types.audio.Transcription)
    assert wer(REFERENCE, result.text) < 0.2


def test_text(client: openai.OpenAI) -> None:
    """Running text, as OpenAI answers it (issue 34, finding 4): the segments joined by spaces, one
    newline at the end; not a line a segment, which broke sentences in two."""
    with (SPEECH / "upload.mp3").open("rb") as audio:
        text = client.audio.transcriptions.create(model="whisper-1", file=audio, response_format="text")
    assert isinstance(text, str)
    assert wer(REFERENCE, text) < 0.2
    with (SPEECH / "upload.mp3").open("rb") as audio:
        verbose = client.audio.transcriptions.create(model="whisper-1", file=audio, response_format="verbose_json")
    assert len(verbose.segments or []) > 1  # the case that broke
    assert text == verbose.text + "\n"


def test_an_empty_transcript_says_why_in_a_header_the_client_ignores(client: openai.OpenAI, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Issue 34, finding 3: speech at four times its speed; VAD hears it, tiny.en writes nothing.
    The answer is OpenAI's empty text, and X-Job-Warnings says what happened."""
    fast = tmp_path / "fast.wav"
    ffmpeg("-i", str(SPEECH / "upload.mp3"), "-af", "atempo=2,atempo=2", str(fast))
    with fast.open("rb") as audio:
        answer = client.audio.transcriptions.with_raw_response.create(model="whisper-1", file=audio, language="en")
    assert answer.parse().text == ""
    [warning] = json.loads(answer.headers["X-Job-Warnings"])
    assert warning.startswith("the model wrote no text from "), warning
    assert "s of speech (VAD heard it): the transcript is empty" in warning


def test_srt_and_vtt(client: openai.OpenAI, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with (SPEECH / "upload.mp3").open("rb") as audio:
        subtitles = client.audio.transcriptions.create(model="whisper-1", file=audio, response_format="srt")
    cues = list(srt.parse(subtitles))
    assert wer(REFERENCE, " ".join(cue.content for cue in cues)) < 0.2
    with (SPEECH / "upload.mp3").open("rb") as audio:
        captions = client.audio.transcriptions.create(model="whisper-1", file=audio, response_format="vtt")
    (tmp_path / "captions.vtt").write_text(captions)
    assert wer(REFERENCE, " ".join(c.text for c in webvtt.read(str(tmp_path / "captions.vtt")))) < 0.2


def test_verbose_json_with_segments_and_words(client: openai.OpenAI) -> None:
    with (SPEECH / "upload.mp3").open("rb") as audio:
        result = client.audio.transcriptions.create(
            model="whisper-1",
            file=audio,
            response_format="verbose_json",
            timestamp_granularities=["word", "segment"],
            language="en",
            prompt="The weather.",
        )
    assert isinstance(result, openai.types.audio.TranscriptionVerbose)
    assert result.language == "en"
    assert 10 < result.duration < 15
    assert wer(REFERENCE, result.text) < 0.2
    assert result.segments
    first = result.segments[0]
    assert 0 <= first.start < first.end <= result.duration + 0.5
    assert first.tokens
    assert first.avg_logprob < 0
    assert 0 <= first.no_speech_prob <= 1
    assert result.words
    assert wer(REFERENCE, " ".join(w.word for w in result.words)) < 0.2
    assert all(w.start <= w.end for w in result.words)


def test_a_file_by_path_name_and_bytes(client: openai.OpenAI) -> None:
    """The client's other ways of giving a file: a (name, bytes) tuple."""
    data = (SPEECH / "inbox.mp4").read_bytes()
    result = client.audio.transcriptions.create(model="whisper-1", file=("clip.mp4", data))
    assert wer(speech_text("inbox"), result.text) < 0.25


def test_a_served_model_by_name_and_an_unknown_one(client: openai.OpenAI) -> None:
    with (SPEECH / "upload.mp3").open("rb") as audio:
        assert client.audio.transcriptions.create(model="tiny.en", file=audio).text
    with (SPEECH / "upload.mp3").open("rb") as audio, pytest.raises(openai.BadRequestError) as caught:
        client.audio.transcriptions.create(model="gpt-4o-transcribe", file=audio)
    error = caught.value
    assert error.status_code == 400
    assert error.type == "invalid_request_error"
    assert "'gpt-4o-transcribe' is not served here; choose one of whisper-1, base, tiny.en" in error.message


def test_not_audio_is_a_400_with_the_jobs_error(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.audio.transcriptions.create(model="whisper-1", file=("notes.mp3", b"plain text, not audio\n" * 50))
    assert caught.value.code == "job_failed"
    assert "not an audio or video file" in caught.value.message
    assert caught.value.response.headers["x-job-id"]


def test_a_bad_field_is_named(client: openai.OpenAI) -> None:
    with (SPEECH / "upload.mp3").open("rb") as audio, pytest.raises(openai.BadRequestError) as caught:
        client.audio.transcriptions.create(model="whisper-1", file=audio, response_format="docx")  # type: ignore[arg-type]
    assert caught.value.param == "response_format"
    assert (
        "response_format: input should be 'json', 'text', 'srt', 'vtt', 'verbose_json' or 'diarized_json'"
        in caught.value.message
    )


def test_the_job_is_an_ordinary_job(stack: Stack, client: openai.OpenAI) -> None:
    """It went through the pipeline: the API reports it like any other, by the id in X-Job-Id."""
    with (SPEECH / "upload.mp3").open("rb") as audio:
        raw = client.audio.transcriptions.with_raw_response.create(model="whisper-1", file=audio)
    job_id = raw.headers["x-job-id"]
    view = httpx.get(f"{stack.url}/v1/jobs/{job_id}").json()
    assert (view["status"], view["progress"]) == ("finished", 100)
    assert raw.parse().text


# --- POST /v1/audio/translations: the same road, with task=translate ------------------------
# The client marks ``audio.translations.create`` deprecated (a warning at each call); it is still
# OpenAI's route, and clients still call it.
translation = pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")


@translation
def test_a_translation_is_a_translate_job_on_a_multilingual_model(stack: Stack, client: openai.OpenAI) -> None:
    """English speech translated into English by the multilingual base model: a real translate job
    (its stored options say so) whose text is the speech; the answer is OpenAI's Translation."""
    with (SPEECH / "upload.mp3").open("rb") as audio:
        raw = client.audio.translations.with_raw_response.create(model="base", file=audio, prompt="The weather.")
    result = raw.parse()
    assert isinstance(result, openai.types.audio.Translation)
    assert wer(REFERENCE, result.text) < 0.3
    job_id = raw.headers["x-job-id"]
    stored = httpx.get(f"{stack.url}/v1/jobs/{job_id}/result", params={"format": "json"}).json()
    assert stored["job_id"] == job_id
    assert (stored["model"], stored["options"]["task"]) == ("base", "translate")
    assert stored["options"]["language"] is None  # OpenAI's translations take no language: it is detected
    assert stored["options"]["initial_prompt"] == "The weather."


@translation
def test_a_translation_in_verbose_json_and_srt(client: openai.OpenAI) -> None:
    with (SPEECH / "upload.mp3").open("rb") as audio:
        verbose = client.audio.translations.create(model="base", file=audio, response_format="verbose_json")
    assert isinstance(verbose, openai.types.audio.TranslationVerbose)
    assert 10 < verbose.duration < 15
    assert verbose.segments
    assert wer(REFERENCE, " ".join(segment.text for segment in verbose.segments)) < 0.3
    assert verbose.model_extra is not None
    assert verbose.model_extra["task"] == "translate"
    with (SPEECH / "upload.mp3").open("rb") as audio:
        subtitles = client.audio.translations.create(model="base", file=audio, response_format="srt")
    assert wer(REFERENCE, " ".join(cue.content for cue in srt.parse(subtitles))) < 0.3


@translation
def test_a_translation_on_an_english_only_model_is_refused_saying_which_to_name(client: openai.OpenAI) -> None:
    """whisper-1 is the workers' default, tiny.en here, which cannot translate."""
    with (SPEECH / "upload.mp3").open("rb") as audio, pytest.raises(openai.BadRequestError) as caught:
        client.audio.translations.create(model="whisper-1", file=audio)
    assert caught.value.type == "invalid_request_error"
    assert "model 'tiny.en' is English-only and cannot translate" in caught.value.message
    assert "served now: base" in caught.value.message
    assert caught.value.param == "task"


@translation
def test_a_translation_takes_only_its_formats(client: openai.OpenAI) -> None:
    with (SPEECH / "upload.mp3").open("rb") as audio, pytest.raises(openai.BadRequestError) as caught:
        client.audio.translations.create(model="base", file=audio, response_format="diarized_json")  # type: ignore[arg-type]
    assert caught.value.param == "response_format"
    assert "response_format: input should be 'json', 'text', 'srt', 'vtt' or 'verbose_json'" in caught.value.message
