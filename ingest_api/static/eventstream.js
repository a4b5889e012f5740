// A reader of the text/event-stream format for fetch() bodies. EventSource cannot send an
// Authorization header, so a page with an API key reads a job's stream with fetch() and parses it
// here, as the HTML standard says ("Parsing an event stream"): lines end in CRLF, LF or CR; a line
// that starts with ":" is a comment (the server's keep-alive); "field: value" fills the message; a
// blank line dispatches it. Reconnecting is the caller's (it knows whether the job has ended).
"use strict";

const EventStream = (() => {
  function createParser(onMessage) {
    let buffer = "";
    let started = false;
    let event = "";
    let data = null;
    let lastId = "";

    function line(text) {
      if (text === "") {
        if (data !== null) onMessage({ event: event || "message", data: data.join("\n"), id: lastId });
        event = "";
        data = null;
        return;
      }
      if (text.startsWith(":")) return;
      const colon = text.indexOf(":");
      const field = colon < 0 ? text : text.slice(0, colon);
      let value = colon < 0 ? "" : text.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "event") event = value;
      else if (field === "data") (data ??= []).push(value);
      else if (field === "id" && !value.includes("\0")) lastId = value;
    }

    function feed(chunk) {
      buffer += chunk;
      if (!started && buffer.length > 0) {
        started = true;
        if (buffer.startsWith("\uFEFF")) buffer = buffer.slice(1);
      }
      let start = 0;
      for (let i = 0; i < buffer.length; i += 1) {
        const c = buffer[i];
        if (c !== "\n" && c !== "\r") continue;
        if (c === "\r" && i === buffer.length - 1) break; // its "\n" may come in the next chunk
        line(buffer.slice(start, i));
        if (c === "\r" && buffer[i + 1] === "\n") i += 1;
        start = i + 1;
      }
      buffer = buffer.slice(start);
    }

    // A message that the stream's end cuts short is dropped, as the standard says.
    return { feed };
  }

  // Reads a fetch() body to its end, calling onMessage for each message.
  async function read(body, onMessage) {
    const parser = createParser(onMessage);
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      parser.feed(value);
    }
  }

  return { createParser, read };
})();
