"""What a user should know about a transcript that the transcript itself does not say.

Each finding is a sentence for the job's ``warnings`` (status, webhook, JSON result, the page and
the CLI show them). A job with findings still finishes: the transcript may be right, and only its
reader can tell. A caller who would rather have a failure asks for one
(``language_confidence_threshold``).
"""

from __future__ import annotations

from gpu_worker.transcript import Transcript
from transcribe_common.errors import PermanentError
from transcribe_common.models import JobOptions

# The decoded audio is "much shorter" than declared when it is this share of it, or less...
TRUNCATED_SHARE = 0.9
# ...and at least this many seconds short (containers round their declared durations).
TRUNCATED_SECONDS = 1.0


def weak_detection(language: str, probability: float) -> str:
    return f"the language was detected as {language!r} with a probability of only {probability:.2f}"


def check_detection(options: JobOptions, language: str, probability: float) -> None:
    """Refuse to go on with a detection weaker than the job's ``language_confidence_threshold``."""
    threshold = options.language_confidence_threshold
    if options.language is None and threshold is not None and probability < threshold:
        raise PermanentError(
            f"{weak_detection(language, probability)}, below language_confidence_threshold ({threshold:g}); "
            "name the language in 'language' and submit again"
        )


def findings(
    transcript: Transcript, *, declared: float | None, confidence_min: float, multilingual: bool = True
) -> list[str]:
    found = []
    if transcript.options.language is None and transcript.language_probability < confidence_min:
        found.append(
            f"{weak_detection(transcript.language, transcript.language_probability)}, below "
            f"LANGUAGE_CONFIDENCE_MIN ({confidence_min:g}); the transcript may be in the wrong language: "
            "if so, name the language in 'language'"
        )
    if not transcript.text:
        found.append("no speech was found in the audio: the transcript is empty")
        if multilingual and transcript.options.language is None:  # speech in a language it did not catch
            found[-1] += (
                f" (the language was detected as {transcript.language!r}; if there is speech, name its language)"
            )
    decoded = transcript.duration
    if declared is not None and decoded <= declared * TRUNCATED_SHARE and declared - decoded >= TRUNCATED_SECONDS:
        found.append(
            f"only {decoded:.1f} s of audio could be decoded, of the {declared:.1f} s the file declares: "
            "the file may be truncated"
        )
    return found
