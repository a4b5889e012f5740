"""Receiving a multipart upload as a stream.

The body is parsed as it arrives (python-multipart's push parser) and the ``file`` part is written
to the store chunk by chunk, so an upload of any size takes a few chunks of memory. Other parts are
small form fields, capped in size. The fields may come before or after the file; they are only
validated once the body is complete.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool

from ingest_api import media
from transcribe_common.errors import InvalidInput
from transcribe_common.store.base import ObjectInfo, ObjectWriter

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks  # a TypedDict its stubs have only

MAX_FIELD_BYTES = 64 * 1024
MAX_FIELDS = 32
# A field may come once, but for OpenAI's list fields (``timestamp_granularities[]``), which may
# come this many times; repeats are joined into one comma-separated value.
MAX_REPEATS = 8


class TooLarge(InvalidInput):
    """The request body is larger than this endpoint takes (413)."""


class BodyTimeout(InvalidInput):
    """The request body stopped arriving (408)."""


async def timed(body: AsyncIterator[bytes], seconds: float) -> AsyncIterator[bytes]:
    """The body's chunks, each of which must come within ``seconds``: a client that stops sending
    half way does not hold the request (and what it has sent) open for ever."""
    chunks = aiter(body)
    while True:
        try:
            chunk = await asyncio.wait_for(anext(chunks), seconds)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise BodyTimeout(f"the request body stopped arriving for {seconds:g} s") from None
        yield chunk


class MultipartReader:
    """Feeds body chunks to the parser; collects form fields and hands back the file's bytes."""

    def __init__(
        self, boundary: bytes, max_file_bytes: int, on_file: Callable[[dict[str, str]], None] | None = None
    ) -> None:
        self.fields: dict[str, str] = {}
        self._on_file = on_file  # sees the fields sent before the file, as the file begins; may refuse them
        self._repeats: dict[str, int] = {}
        self.filename: str | None = None
        self.file_bytes = 0
        self.complete = False
        self._max = max_file_bytes
        self._pending: list[bytes] = []
        self._headers: dict[bytes, bytes] = {}
        self._name = b""
        self._value = b""
        self._field: str | None = None
        self._in_file = False
        self._buffer = bytearray()
        self._digest = hashlib.sha256()
        callbacks: MultipartCallbacks = {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda d, s, e: self._add_name(d[s:e]),
            "on_header_value": lambda d, s, e: self._add_value(d[s:e]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": lambda d, s, e: self._data(d[s:e]),
            "on_part_end": self._part_end,
            "on_end": self._end,
        }
        try:  # a boundary the parser refuses (longer than 256 bytes) is a FormParserError here
            self._parser = MultipartParser(boundary, callbacks)
        except FormParserError as exc:
            raise InvalidInput(f"the multipart boundary is refused: {exc}") from exc

    def feed(self, chunk: bytes) -> bytes:
        """Parse one chunk of the body; returns the file bytes it held."""
        try:
            self._parser.write(chunk)
        except FormParserError as exc:
            raise InvalidInput(f"the multipart body is malformed: {exc}") from exc
        data = b"".join(self._pending)
        self._pending.clear()
        return data

    def fingerprint(self) -> str:
        """What tells two uploads apart, for ``Idempotency-Key``: the file's bytes, its name, the fields."""
        described = json.dumps([self.filename, sorted(self.fields.items())]).encode()
        return hashlib.sha256(self._digest.digest() + described).hexdigest()

    def _part_begin(self) -> None:
        self._headers, self._field, self._in_file = {}, None, False
        self._buffer = bytearray()

    def _add_name(self, data: bytes) -> None:
        self._name += data

    def _add_value(self, data: bytes) -> None:
        self._value += data

    def _header_end(self) -> None:
        self._headers[self._name.lower()] = self._value
        self._name, self._value = b"", b""

    def _headers_finished(self) -> None:
        _, params = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = _text(params.get(b"name", b""), "a form field's name")
        if b"filename" in params:
            if name != "file" or self.filename is not None:
                raise InvalidInput("send exactly one file, in the form field 'file'")
            # The part's own Content-Type is not kept: what the file is, is read from its bytes (media).
            self.filename = params[b"filename"].decode("utf-8", errors="replace")
            self._in_file = True
            if self._on_file is not None:
                self._on_file(dict(self.fields))
        elif len(self.fields) >= MAX_FIELDS:
            raise InvalidInput("too many form fields")
        else:
            self._field = name

    def _data(self, data: bytes) -> None:
        if self._in_file:
            self.file_bytes += len(data)
            if self.file_bytes > self._max:
                raise TooLarge(f"the upload is larger than MAX_UPLOAD_MB ({self._max // 2**20} MiB)")
            self._pending.append(data)
            self._digest.update(data)
        else:
            self._buffer += data
            if len(self._buffer) > MAX_FIELD_BYTES:
                raise InvalidInput(f"form field {self._field!r} is longer than {MAX_FIELD_BYTES} bytes")

    def _part_end(self) -> None:
        if self._field is None:
            return
        value = self._buffer.decode("utf-8", errors="replace")
        previous = self.fields.get(self._field)
        if previous is None:
            self.fields[self._field] = value
            self._repeats[self._field] = 1
            return
        self._repeats[self._field] += 1
        if not self._field.endswith("[]"):
            raise InvalidInput(f"form field {self._field!r} is given more than once; give it once")
        joined = f"{previous},{value}"
        if self._repeats[self._field] > MAX_REPEATS or len(joined) > MAX_FIELD_BYTES:
            raise InvalidInput(f"form field {self._field!r} is given too often (at most {MAX_REPEATS} times)")
        self.fields[self._field] = joined

    def _end(self) -> None:
        self.complete = True


def _text(raw: bytes, what: str) -> str:
    try:
        return raw.decode()
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{what} is not valid UTF-8") from exc


def boundary_of(content_type: str) -> bytes:
    kind, params = parse_options_header(content_type)
    if kind != b"multipart/form-data" or not params.get(b"boundary"):
        raise InvalidInput("uploads must be multipart/form-data with a boundary")
    return params[b"boundary"]


async def drain_upload(body: AsyncIterator[bytes], reader: MultipartReader) -> str:
    """Read a whole upload without keeping it (a replay, to be compared with the first); its fingerprint."""
    async for chunk in body:
        reader.feed(chunk)
    if not reader.complete:
        raise InvalidInput("the multipart body ended before its closing boundary")
    return reader.fingerprint()


async def receive_upload(
    body: AsyncIterator[bytes],
    reader: MultipartReader,
    open_writer: Callable[[str, str], ObjectWriter],
) -> ObjectInfo:
    """Stream the body into the store; the object exists only if the whole upload arrived. It is
    stored as the type its first bytes say (``media``), so the writer opens once they are here."""
    writer: ObjectWriter | None = None
    head = b""  # the file's first bytes, until the writer is open
    try:
        async for chunk in body:
            data = reader.feed(chunk)
            if writer is None:
                head += data
                if reader.filename is None or (len(head) < media.SNIFF_BYTES and not reader.complete):
                    continue
                writer, data = open_writer(reader.filename, media.media_type(head)), head
            if data:
                await run_in_threadpool(writer.write, data)
        if not reader.complete:
            raise InvalidInput("the multipart body ended before its closing boundary")
        if reader.filename is None:
            raise InvalidInput("no file in the upload: send it in the form field 'file'")
        if writer is None or writer.size == 0:
            raise InvalidInput("the uploaded file is empty")
        return await run_in_threadpool(writer.commit)
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
