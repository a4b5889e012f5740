"""Request validation errors as a person reads them: one sentence, and the field it is about.

Every 4xx and 5xx of the REST API is ``{"detail": "<a sentence>"}``; one about a field adds
``"field": "<its name>"`` (``language``, ``limit``, ``options.output``). FastAPI's own answer to a
bad field is pydantic's list of error objects, with its prefixes (``Value error, ...``): a second
shape, and one written for programs. The OpenAI-compatible routes answer in OpenAI's shape, with
the same sentence (``routes/openai.py``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

# pydantic's sentences that say less than they could, by its error type.
READABLE = {
    "extra_forbidden": "not a field of this request (the fields are in /docs)",
    "bool_parsing": "should be true or false",
    "bool_type": "should be true or false",
}
# What pydantic puts before the message of an error a validator raised.
PREFIXES = ("Value error, ", "Assertion failed, ")
WHERE = ("body", "query", "path", "header", "form")  # where FastAPI says a field came from
# How pydantic names the branch of a union or the step of a validator it tried: not a field.
_TAG = re.compile(r"(?:constrained-)?(?:str|int|float|bool|bytes|list|dict|tuple|set|none|url)|[a-z]+-.*|.*[\[\]].*")


def field_of(error: dict[str, Any]) -> str | None:
    """The dotted name of the field an error is about, None for the body as a whole. Not the place
    in a list (``output``, not ``output.0``: the sentence says which value), nor the branch of a
    union pydantic tried (``db_id``, not ``db_id.constrained-str``)."""
    parts = list(error.get("loc", ()))
    if parts and parts[0] in WHERE:
        parts = parts[1:]
    names = [part for n, part in enumerate(parts) if isinstance(part, str) and (n == 0 or not _TAG.fullmatch(part))]
    return ".".join(names) or None


def message_of(error: dict[str, Any]) -> str:
    message = str(error.get("msg", "invalid"))
    for prefix in PREFIXES:
        message = message.removeprefix(prefix)
    if error.get("type") == "json_invalid" and (where := (error.get("ctx") or {}).get("error")):
        message = f"the body is not valid JSON ({where})"
    message = READABLE.get(str(error.get("type")), message)
    if message[1:2].islower():  # a word, not an acronym ("URL scheme ...")
        message = message[:1].lower() + message[1:]
    return message


def sentence(errors: Sequence[Any]) -> tuple[str, str | None]:
    """(the sentence, the first field named) for pydantic's or FastAPI's list of errors: one
    message a field (a value that fits no branch of a union fails each; the first says enough)."""
    said: dict[str | None, str] = {}
    for error in errors:
        field = field_of(error)
        if field not in said or field is None:
            message = message_of(error)
            said.setdefault(field, f"{field}: {message}" if field else message)
    fields = [field for field in said if field]
    return "; ".join(said.values()) or "the request is not valid", fields[0] if fields else None


def body(errors: Sequence[Any]) -> dict[str, str]:
    """The REST API's answer to a request with these errors."""
    detail, field = sentence(errors)
    return {"detail": detail, "field": field} if field else {"detail": detail}


_NAMED = re.compile(r"([a-z][a-z0-9_]*(?:\[\])?): ")


def field_named(sentence: str) -> str | None:
    """The field a refusal of ours is about: the sentence names it first (``model: ...``)."""
    found = _NAMED.match(sentence)
    return found[1] if found else None
