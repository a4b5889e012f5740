"""What a user should know about a transcript that the transcript itself does not say.

Each finding is a sentence for the job's ``warnings`` (status, webhook, JSON result, the page and
the CLI show them). A job with findings still finishes: the transcript may be right, and only its
reader can tell. A caller who would rather have a failure asks for one
(``language_confidence_threshold``).
"""

from __future__ import annotations

import re

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


def empty(transcript: Transcript, multilingual: bool) -> str:
    """Why a transcript is empty: no speech heard, or speech the model wrote nothing from."""
    options, speech = transcript.options, transcript.speech_seconds
    if speech == 0:
        said = "no speech was found in the audio: the transcript is empty"
        if multilingual and options.language is None:  # speech in a language it did not catch
            said += f" (the language was detected as {transcript.language!r}; if there is speech, name its language)"
        return said
    heard = "the audio" if speech is None else f"{speech:.1f} s of speech (VAD heard it)"
    said = f"the model wrote no text from {heard}: the transcript is empty"
    if options.task == "translate":
        return f"{said}; translating from {transcript.language!r} gave nothing: try task=transcribe, or a larger model"
    if options.language is not None:
        return f"{said}; check that the speech is in {options.language!r}, or try a larger model"
    return f"{said}; try naming the language in 'language', or a larger model"


# The commonest words of English: at least a third of any English text, next to none of another
# language's. Too few of them in a translation's text: it is not in English.
ENGLISH_WORDS = frozenset(
    "the a an and or but of to in on at for with from by as is are was were be been it its this that these those "  # noqa: SIM905
    "i you he she we they me him her us them my your his our their not no yes have has had do does did will would "
    "can could should there here what which who how all if so".split()
)
ENGLISH_SHARE_MIN = 0.08
WORDS_TO_JUDGE = 12  # fewer words than this say too little


def not_english(text: str) -> bool:
    """Whether a text of some length has next to none of English's commonest words."""
    words = re.findall(r"[a-z']+", text.lower())
    return len(words) >= WORDS_TO_JUDGE and sum(w in ENGLISH_WORDS for w in words) / len(words) < ENGLISH_SHARE_MIN


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
        found.append(empty(transcript, multilingual))
    elif transcript.options.task == "translate" and not_english(transcript.text):
        found.append(
            f"task=translate, but the text does not read as English: the model ({transcript.model}) may have "
            "written the speech down instead of translating it; a larger multilingual model (small or up) "
            "translates more surely"
        )
    decoded = transcript.duration
    if declared is not None and decoded <= declared * TRUNCATED_SHARE and declared - decoded >= TRUNCATED_SECONDS:
        found.append(
            f"only {decoded:.1f} s of audio could be decoded, of the {declared:.1f} s the file declares: "
            "the file may be truncated"
        )
    return found
