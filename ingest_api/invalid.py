"""Request validation errors as a person reads them: one sentence, and the field it is about.

Every 4xx and 5xx of the REST API is ``{"detail": "<a sentence>"}``; one about a field adds
``"field": "<its name>"`` (``language``, ``limit``, ``options.output``). FastAPI's own answer to a
bad field is pydantic's list of error objects, with its prefixes (``Value error, ...``): a second
shape, and one written for programs. The OpenAI-compatible routes answer in OpenAI's shape, with
the same sentence (``routes/openai.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# What pydantic puts before the message of an error a validator raised.
PREFIXES = ("Value error, ", "Assertion failed, ")
WHERE = ("body", "query", "path", "header", "form")  # where FastAPI says a field came from


def field_of(error: dict[str, Any]) -> str | None:
    """The dotted name of the field an error is about, None for the body as a whole."""
    parts = list(error.get("loc", ()))
    if parts and parts[0] in WHERE:
        parts = parts[1:]
    # The field, not the place in its list: output, not output.0 (the sentence says which value).
    return ".".join(str(part) for part in parts if not isinstance(part, int)) or None


def message_of(error: dict[str, Any]) -> str:
    message = str(error.get("msg", "invalid"))
    for prefix in PREFIXES:
        message = message.removeprefix(prefix)
    if message[1:2].islower():  # a word, not an acronym ("URL scheme ...")
        message = message[:1].lower() + message[1:]
    return message


def sentence(errors: Sequence[Any]) -> tuple[str, str | None]:
    """(the sentence, the first field named) for pydantic's or FastAPI's list of errors."""
    said = []
    for error in errors:
        field, message = field_of(error), message_of(error)
        said.append(f"{field}: {message}" if field else message)
    fields = [field for error in errors if (field := field_of(error))]
    return "; ".join(dict.fromkeys(said)) or "the request is not valid", fields[0] if fields else None


def body(errors: Sequence[Any]) -> dict[str, str]:
    """The REST API's answer to a request with these errors."""
    detail, field = sentence(errors)
    return {"detail": detail, "field": field} if field else {"detail": detail}
