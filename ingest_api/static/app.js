// The workspace page. It speaks the public API like any other client:
// - the job list is GET /v1/jobs (newest first, a cursor for "More"), so it survives a reload;
// - each dropped or picked file becomes a job (POST /v1/transcribe, multipart);
// - a job's bar follows its event stream (GET /v1/jobs/{id}/events), read with fetch() so that
//   an API key can go with it, and falls back to polling GET /v1/jobs/{id} where the stream fails;
// - a finished job opens into its transcript (?format=json) beside a player of its own input.
// Every fetch carries the API key when one is given, so media and downloads are fetched as blobs then.
"use strict";

// Polling (where a stream fails, or while all MAX_STREAMS are taken): a running job every 2 s, a
// queued one every 5 s, so that a long list of waiting jobs costs the server little.
const POLL_MS = 2000;
const QUEUED_POLL_MS = 5000;
const PAGE_SIZE = 20;
// Chromium opens at most six connections to one host over HTTP/1.1, and each open stream holds
// one: past this many, jobs are polled, so that the page's other requests never wait on a stream.
const MAX_STREAMS = 3;
const ENDED = new Set(["finished", "failed", "cancelled", "deleted"]);
const ACTIVE = new Set(["queued", "started"]);
const SPEAKER_COLOURS = 6; // .speaker-0 ... .speaker-5 in app.css
const $ = (selector) => document.querySelector(selector);

class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

// ---- The API ----

function apiKey() {
  return $("#api-key").value.trim();
}

function headers() {
  const key = apiKey();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

async function errorText(response) {
  try {
    const body = await response.json();
    if (Array.isArray(body.detail)) {
      return body.detail.map((e) => `${e.loc.filter((p) => p !== "body").join(".")}: ${e.msg}`).join("; ");
    }
    return body.detail || body.error?.message || response.statusText;
  } catch {
    return `${response.status} ${response.statusText}`;
  }
}

async function api(path, options = {}) {
  let response;
  try {
    response = await fetch(path, { ...options, headers: { ...headers(), ...options.headers } });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError("the server cannot be reached", 0);
  }
  if (!response.ok) throw new ApiError(await errorText(response), response.status);
  return response;
}

function sleep(ms, signal) {
  return new Promise((wake) => {
    const timer = setTimeout(wake, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(timer);
      wake();
    });
  });
}

// ---- Following a job: its event stream, else polling ----

let openStreams = 0;

// Reads the job's stream until it closes. `delivered` says whether it gave anything: a stream that
// gave nothing (refused, or not served here) is not tried again for this job.
async function streamJob(jobId, onView, signal) {
  const outcome = { last: null, delivered: false };
  try {
    const response = await fetch(`/v1/jobs/${jobId}/events`, {
      headers: { ...headers(), Accept: "text/event-stream" },
      cache: "no-store",
      signal,
    });
    if (!response.ok || !(response.headers.get("content-type") || "").startsWith("text/event-stream")) {
      await response.body?.cancel();
      return outcome;
    }
    await EventStream.read(response.body, (message) => {
      if (message.event !== "job") return;
      outcome.last = JSON.parse(message.data);
      outcome.delivered = true;
      onView(outcome.last);
    });
  } catch (error) {
    if (signal.aborted) throw error;
    // A dropped connection: polling takes over, and the stream is tried again if it had worked.
  }
  return outcome;
}

async function follow(jobId, onView, signal) {
  let streamable = true;
  for (;;) {
    if (streamable && openStreams < MAX_STREAMS) {
      openStreams += 1;
      let outcome;
      try {
        outcome = await streamJob(jobId, onView, signal);
      } finally {
        openStreams -= 1;
      }
      if (outcome.last && ENDED.has(outcome.last.status)) return outcome.last;
      streamable = outcome.delivered;
    }
    let view;
    try {
      view = await (await api(`/v1/jobs/${jobId}`, { signal })).json();
    } catch (error) {
      if (error.status !== 0) throw error; // 404, 401...: said on the row
    }
    if (view) {
      onView(view);
      if (ENDED.has(view.status)) return view;
    }
    await sleep(view?.status === "queued" ? QUEUED_POLL_MS : POLL_MS, signal);
    if (signal.aborted) throw new DOMException("no longer shown", "AbortError");
  }
}

// ---- Formatting ----

function clock(seconds, precise = false) {
  const total = Math.max(0, seconds || 0);
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const secs = total % 60;
  const s = precise ? secs.toFixed(1).padStart(4, "0") : String(Math.floor(secs)).padStart(2, "0");
  return hours ? `${hours}:${String(minutes).padStart(2, "0")}:${s}` : `${minutes}:${s}`;
}

function when(iso) {
  const date = new Date(iso);
  const today = new Date().toDateString() === date.toDateString();
  const time = date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  return today ? time : `${date.toLocaleDateString([], { month: "short", day: "numeric" })} ${time}`;
}

function displayName(view) {
  return view.filename || rows.get(view.job_id)?.fileName || view.job_id;
}

// The input's name without its folder, query or extension: "meeting" for ".../meeting.mp3?x=1".
function baseName(view) {
  const name = (view.filename || "").split(/[?#]/)[0].split("/").pop() || "";
  return name.replace(/\.[^.]+$/, "") || view.job_id;
}

function fileNameFrom(disposition) {
  const encoded = /filename\*\s*=\s*UTF-8''([^;]+)/i.exec(disposition || "");
  if (encoded) {
    try {
      return decodeURIComponent(encoded[1].trim());
    } catch {
      /* the plain name below */
    }
  }
  return /filename\s*=\s*"([^"]+)"/i.exec(disposition || "")?.[1] || null;
}

function element(tag, className, text) {
  return Object.assign(document.createElement(tag), { className, textContent: text ?? "" });
}

function showWarnings(list, warnings) {
  // What the worker found worth telling (a weak language detection, no speech, a truncated file).
  list.replaceChildren(...warnings.map((text) => element("li", "", text)));
  list.hidden = warnings.length === 0;
}

// ---- The job list ----

const rows = new Map(); // job id -> Row
let nextCursor = null;
let listGeneration = 0; // a refresh makes the answers of older list requests stale

class Row {
  constructor(name) {
    this.el = $("#job-template").content.firstElementChild.cloneNode(true);
    this.el.querySelector(".name").textContent = name;
    this.fileName = name; // until the job's own view names it
    this.view = null;
    this.controller = new AbortController();
    this.abortUpload = null;
    this.el.querySelector(".name").addEventListener("click", () => this.view && openViewer(this.view));
    this.el.querySelector(".cancel").addEventListener("click", () => this.cancel());
    this.el.querySelector(".delete").addEventListener("click", () => this.delete());
  }

  get jobId() {
    return this.view?.job_id || null;
  }

  setState(state, text) {
    this.el.className = `job ${state}${viewer.jobId && viewer.jobId === this.jobId ? " open" : ""}`;
    this.el.dataset.state = state;
    this.el.querySelector(".state").textContent = text;
  }

  uploading(percent) {
    this.setState("uploading", `uploading · ${Math.round(percent)}%`);
    this.el.querySelector("progress").value = percent;
    this.el.querySelector(".cancel").hidden = false;
  }

  failed(message) {
    this.setState("failed", "failed");
    this.el.querySelector(".detail").textContent = message;
    this.el.querySelector(".cancel").hidden = true;
    this.el.querySelector(".delete").hidden = !this.jobId;
  }

  show(view) {
    const first = !this.view;
    if (!first && this.view.status === view.status && ENDED.has(view.status)) return; // nothing new
    this.view = view;
    this.el.dataset.jobId = view.job_id;
    rows.set(view.job_id, this);
    const { status } = view;
    const shown = status === "failed" || status === "cancelled" ? status : `${status} · ${Math.round(view.progress)}%`;
    this.setState(status, shown);
    const bar = this.el.querySelector("progress");
    bar.value = Math.max(status === "finished" ? 100 : view.progress, first ? 0 : bar.value); // only forward
    const name = this.el.querySelector(".name");
    name.textContent = view.filename || this.fileName;
    name.disabled = status !== "finished";
    name.title = status === "finished" ? "Open the transcript" : "";
    const created = this.el.querySelector(".created");
    if (view.created_at) {
      created.dateTime = view.created_at;
      created.textContent = when(view.created_at);
      created.title = new Date(view.created_at).toLocaleString();
    }
    this.el.querySelector(".length").textContent = lengthText(view);
    const facts = [view.language && `language ${view.language}`, view.model && `model ${view.model}`];
    this.el.querySelector(".detail").textContent = view.error || facts.filter(Boolean).join(", ");
    showWarnings(this.el.querySelector(".warnings"), view.warnings || []);
    this.el.querySelector(".cancel").hidden = !ACTIVE.has(status);
    this.el.querySelector(".delete").hidden = status === "deleted";
  }

  follow() {
    follow(this.jobId, (view) => this.show(view), this.controller.signal)
      .then((view) => view && this.ended(view))
      .catch((error) => {
        // The job's last known state stays: the job itself may be fine (a key changed, say).
        if (error.name !== "AbortError") this.el.querySelector(".detail").textContent = `No news of the job: ${error.message}`;
      });
  }

  ended(view) {
    if (view.status === "finished" && this.local && !viewer.jobId) openViewer(view);
  }

  async cancel() {
    if (this.abortUpload) {
      this.abortUpload();
      return;
    }
    try {
      this.show(await (await api(`/v1/jobs/${this.jobId}`, { method: "DELETE" })).json());
    } catch (error) {
      this.el.querySelector(".detail").textContent = error.message;
    }
  }

  async delete() {
    const name = this.el.querySelector(".name").textContent;
    if (!window.confirm(`Delete "${name}", its recording and its transcript? This cannot be undone.`)) return;
    try {
      await api(`/v1/jobs/${this.jobId}?delete_objects=true`, { method: "DELETE" });
    } catch (error) {
      if (error.status !== 410) {
        this.el.querySelector(".detail").textContent = error.message;
        return;
      }
    }
    if (viewer.jobId === this.jobId) closeViewer();
    this.remove();
  }

  remove() {
    this.controller.abort();
    this.el.remove();
    if (this.jobId) rows.delete(this.jobId);
    $("#no-jobs").hidden = $("#jobs").children.length > 0;
  }
}

function seconds(value) {
  return `${value < 10 ? value.toFixed(1) : Math.round(value)} s`;
}

function lengthText(view) {
  const parts = [];
  if (view.duration) parts.push(`${clock(view.duration)} of audio`);
  const from = view.created_at || view.started_at; // from the submission: what the user waited
  if (from && view.finished_at) {
    const took = (new Date(view.finished_at) - new Date(from)) / 1000;
    parts.push(`took ${seconds(took)}`);
    if (view.created_at && view.started_at) {
      const queued = (new Date(view.started_at) - new Date(view.created_at)) / 1000;
      if (queued >= 1) parts.push(`${seconds(queued)} of it before it started`); // the upload, the queue
    }
  }
  return parts.join(" · ");
}

function place(view, atTop) {
  if (view.status === "deleted" || rows.has(view.job_id)) return;
  const row = new Row(displayName(view));
  row.show(view);
  if (atTop) $("#jobs").prepend(row.el);
  else $("#jobs").append(row.el);
  if (!ENDED.has(view.status)) row.follow();
}

async function loadJobs(more = false) {
  const generation = more ? listGeneration : ++listGeneration;
  const params = new URLSearchParams({ limit: String(PAGE_SIZE) });
  if (more && nextCursor) params.set("cursor", nextCursor);
  $("#more").disabled = true;
  let page;
  try {
    page = await (await api(`/v1/jobs?${params}`)).json();
  } catch (error) {
    if (generation !== listGeneration) return;
    $("#list-error").textContent =
      error.status === 401 || error.status === 403
        ? `${error.message}: enter the server's API key under Options.`
        : `The job list cannot be loaded: ${error.message}`;
    $("#list-error").hidden = false;
    if (error.status === 401) $("details.options").open = true;
    $("#jobs").dataset.state = "error";
    return;
  } finally {
    $("#more").disabled = false;
  }
  if (generation !== listGeneration) return;
  $("#list-error").hidden = true;
  if (!more) {
    for (const row of [...rows.values()]) if (!row.local || ENDED.has(row.view?.status)) row.remove();
  }
  for (const view of page.jobs) place(view, false);
  nextCursor = page.next_cursor || null;
  $("#more").hidden = !nextCursor;
  $("#no-jobs").hidden = $("#jobs").children.length > 0;
  $("#jobs").dataset.state = "loaded";
}

// ---- Submitting files ----

function upload(file, row) {
  // XMLHttpRequest, not fetch: it reports the upload's own progress.
  return new Promise((resolve, reject) => {
    const form = new FormData();
    form.append("source_type", "upload");
    for (const name of ["language", "model", "task"]) {
      const value = $(`#${name}`).value.trim();
      if (value) form.append(name, value);
    }
    if ($("#multichannel").checked) {
      form.append("multichannel", "true");
      const labels = $("#speaker-labels").value.trim();
      if (labels) form.append("speaker_labels", labels);
    }
    form.append("file", file, file.name);
    const request = new XMLHttpRequest();
    request.open("POST", "/v1/transcribe");
    for (const [name, value] of Object.entries(headers())) request.setRequestHeader(name, value);
    request.upload.onprogress = (event) => {
      if (event.lengthComputable) row.uploading((100 * event.loaded) / event.total);
    };
    request.onload = () => {
      const response = new Response(request.responseText, { status: request.status, statusText: request.statusText });
      if (request.status === 202) resolve(JSON.parse(request.responseText));
      else errorText(response).then((text) => reject(new Error(text)));
    };
    request.onerror = () => reject(new Error("the server cannot be reached"));
    request.onabort = () => reject(new Error("the upload was cancelled"));
    row.abortUpload = () => request.abort();
    request.send(form);
  });
}

async function transcribe(file) {
  const row = new Row(file.name);
  row.local = true; // submitted here: it opens when it is done, if nothing else is open
  $("#jobs").prepend(row.el);
  $("#no-jobs").hidden = true;
  row.uploading(0);
  let accepted;
  try {
    accepted = await upload(file, row);
  } catch (error) {
    row.failed(error.message);
    return;
  } finally {
    row.abortUpload = null;
  }
  row.show({ progress: 0, warnings: [], ...accepted });
  placeByJobId(row.el);
  row.follow();
}

// Rows with a job stand newest first, by job id, as the API lists them (and as they come back
// after a reload); files dropped together are accepted in any order.
function placeByJobId(el) {
  const jobId = el.dataset.jobId;
  const older = [...$("#jobs").children].find((other) => other !== el && other.dataset.jobId && other.dataset.jobId < jobId);
  if (older) {
    if (older !== el.nextElementSibling) older.before(el);
  } else {
    $("#jobs").append(el);
  }
}

// ---- The transcript viewer ----

const viewer = { jobId: null, view: null, segments: [], cues: [], playing: -1, mediaUrl: null, controller: null };

async function openViewer(view) {
  closeViewer();
  const controller = new AbortController();
  Object.assign(viewer, { jobId: view.job_id, view, controller });
  for (const row of rows.values()) row.el.classList.toggle("open", row.jobId === view.job_id);
  history.replaceState(null, "", `#job=${encodeURIComponent(view.job_id)}`);
  $("#viewer-title").textContent = displayName(view);
  $("#viewer-title").tabIndex = -1;
  const facts = [
    view.language && `language ${view.language}`,
    view.duration && `${clock(view.duration)} of audio`,
    view.model && `model ${view.model}`,
    view.created_at && `submitted ${when(view.created_at)}`, // as the list says it
  ];
  $("#viewer-facts").textContent = facts.filter(Boolean).join(" · ");
  showWarnings($("#viewer-warnings"), view.warnings || []);
  $("#search").value = "";
  $("#viewer").dataset.jobId = view.job_id;
  $("#viewer").dataset.state = "loading";
  $("#viewer").hidden = false;
  $("#viewer-title").focus({ preventScroll: true });
  $("#viewer").scrollIntoView({ block: "nearest" });
  await Promise.all([loadTranscript(view, controller.signal), loadMedia(view, controller.signal)]);
}

function closeViewer() {
  viewer.controller?.abort();
  const player = $("#player");
  player.pause();
  player.removeAttribute("src");
  player.load();
  if (viewer.mediaUrl) URL.revokeObjectURL(viewer.mediaUrl);
  Object.assign(viewer, { jobId: null, view: null, segments: [], cues: [], playing: -1, mediaUrl: null });
  $("#viewer").hidden = true;
  $("#viewer").dataset.state = "";
  delete $("#viewer").dataset.jobId;
  $("#cues").replaceChildren();
  $("#no-cues").hidden = true;
  $("#viewer-error").hidden = true;
  $("#speakers").hidden = true;
  $("#search-count").textContent = "";
  $("#copied").textContent = "";
  for (const row of rows.values()) row.el.classList.remove("open");
  if (location.hash) history.replaceState(null, "", location.pathname + location.search);
}

async function loadTranscript(view, signal) {
  try {
    const transcript = await (await api(`/v1/jobs/${view.job_id}/result?format=json`, { signal })).json();
    if (signal.aborted) return;
    renderCues(transcript.segments || []);
    if (transcript.warnings?.length) showWarnings($("#viewer-warnings"), transcript.warnings);
    $("#viewer").dataset.state = "ready";
  } catch (error) {
    if (error.name === "AbortError") return;
    $("#viewer-error").textContent = `The transcript cannot be loaded: ${error.message}`;
    $("#viewer-error").hidden = false;
    $("#viewer").dataset.state = "error";
  }
}

async function loadMedia(view, signal) {
  const player = $("#player");
  player.hidden = false;
  $("#player-note").hidden = true;
  player.classList.add("audio-only");
  if (view.source === "url" && view.filename) {
    player.src = view.filename; // the URL it was fetched from: the server keeps no copy to stream
    return;
  }
  const path = `/v1/jobs/${view.job_id}/input`;
  if (!apiKey()) {
    player.src = path; // the element's own Range requests stream it
    return;
  }
  try {
    // A media element cannot send the Authorization header: the whole input, as a blob.
    const blob = await (await api(path, { signal })).blob();
    if (signal.aborted) return;
    viewer.mediaUrl = URL.createObjectURL(blob);
    player.src = viewer.mediaUrl;
  } catch (error) {
    if (error.name !== "AbortError") noMedia(error.message);
  }
}

function noMedia(reason) {
  $("#player").hidden = true;
  $("#player-note").textContent = `The recording cannot be played here: ${reason}.`;
  $("#player-note").hidden = false;
}

function renderCues(segments) {
  const speakers = new Map();
  for (const segment of segments) {
    if (segment.speaker && !speakers.has(segment.speaker)) speakers.set(segment.speaker, speakers.size);
  }
  const colour = (name) => `speaker-${speakers.get(name) % SPEAKER_COLOURS}`;
  viewer.segments = segments;
  viewer.cues = segments.map((segment, index) => {
    const cue = element("li", "cue");
    Object.assign(cue.dataset, { index, start: segment.start, end: segment.end });
    const time = element("button", "time", clock(segment.start, true));
    time.type = "button";
    time.setAttribute("aria-label", `Play from ${clock(segment.start)}`);
    cue.append(time);
    if (segment.speaker) {
      cue.classList.add(colour(segment.speaker));
      cue.dataset.speaker = segment.speaker;
      cue.append(element("span", `speaker ${colour(segment.speaker)}`, segment.speaker));
    }
    cue.append(element("span", "text", segment.text.trim()));
    return cue;
  });
  $("#cues").replaceChildren(...viewer.cues);
  $("#no-cues").hidden = segments.length > 0;
  $("#speakers").replaceChildren(...[...speakers.keys()].map((name) => element("span", `speaker ${colour(name)}`, name)));
  $("#speakers").hidden = speakers.size === 0;
  viewer.playing = -1;
  highlightPlaying();
}

function playFrom(index) {
  const player = $("#player");
  player.currentTime = viewer.segments[index].start;
  highlightPlaying();
  player.play().catch(() => {
    /* no media, or the browser wants a gesture: the cue is still marked */
  });
}

function cueAt(time) {
  // The last cue that has begun; between two cues, none.
  let low = 0;
  let high = viewer.segments.length - 1;
  let found = -1;
  while (low <= high) {
    const middle = (low + high) >> 1;
    if (viewer.segments[middle].start <= time) {
      found = middle;
      low = middle + 1;
    } else {
      high = middle - 1;
    }
  }
  return found >= 0 && time < viewer.segments[found].end ? found : -1;
}

function highlightPlaying() {
  const player = $("#player");
  const index = cueAt(player.currentTime);
  if (index === viewer.playing) return;
  viewer.cues[viewer.playing]?.classList.remove("playing");
  viewer.cues[viewer.playing]?.removeAttribute("aria-current");
  viewer.playing = index;
  const cue = viewer.cues[index];
  if (!cue) return;
  cue.classList.add("playing");
  cue.setAttribute("aria-current", "true");
  if (!player.paused) cue.scrollIntoView({ block: "nearest" });
}

function marked(text, query) {
  if (!query) return [[document.createTextNode(text)], 0];
  const nodes = [];
  const lower = text.toLowerCase();
  let from = 0;
  let count = 0;
  for (let at = lower.indexOf(query); at >= 0; at = lower.indexOf(query, at + query.length)) {
    nodes.push(document.createTextNode(text.slice(from, at)));
    nodes.push(element("mark", "", text.slice(at, at + query.length)));
    from = at + query.length;
    count += 1;
  }
  nodes.push(document.createTextNode(text.slice(from)));
  return [nodes, count];
}

function search() {
  const query = $("#search").value.trim().toLowerCase();
  let total = 0;
  viewer.cues.forEach((cue, index) => {
    const [nodes, count] = marked(viewer.segments[index].text.trim(), query);
    cue.querySelector(".text").replaceChildren(...nodes);
    cue.classList.toggle("match", count > 0);
    cue.classList.remove("current");
    total += count;
  });
  $("#search-count").textContent = query ? `${total} ${total === 1 ? "match" : "matches"}` : "";
  $("#search-count").dataset.count = String(total);
}

function nextMatch(backwards) {
  const matches = viewer.cues.filter((cue) => cue.classList.contains("match"));
  if (!matches.length) return;
  const at = matches.findIndex((cue) => cue.classList.contains("current"));
  const next = matches[(at + (backwards ? -1 : 1) + matches.length) % matches.length];
  matches[at]?.classList.remove("current");
  next.classList.add("current");
  next.scrollIntoView({ block: "nearest" });
}

function transcriptText() {
  return viewer.segments.map((s) => (s.speaker ? `${s.speaker}: ` : "") + s.text.trim()).join("\n");
}

async function copyText() {
  const text = transcriptText();
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    // Not a secure context (http:// to another machine), or no permission: the old way.
    const area = Object.assign(document.createElement("textarea"), { value: text });
    document.body.append(area);
    area.select();
    const done = document.execCommand("copy");
    area.remove();
    if (!done) {
      $("#copied").textContent = "The browser refused to copy";
      return;
    }
  }
  $("#copied").textContent = "Copied";
}

async function download(view, format) {
  try {
    const response = await api(`/v1/jobs/${view.job_id}/result?format=${format}`);
    const link = document.createElement("a");
    link.href = URL.createObjectURL(await response.blob());
    link.download = fileNameFrom(response.headers.get("content-disposition")) || `${baseName(view)}.${format}`;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  } catch (error) {
    $("#viewer-error").textContent = `The ${format} file cannot be downloaded: ${error.message}`;
    $("#viewer-error").hidden = false;
  }
}

async function openFromAddress() {
  const id = new URLSearchParams(location.hash.slice(1)).get("job");
  if (!id || viewer.jobId === id) return;
  try {
    const view = rows.get(id)?.view || (await (await api(`/v1/jobs/${encodeURIComponent(id)}`)).json());
    if (view.status === "finished") openViewer(view);
  } catch {
    history.replaceState(null, "", location.pathname); // a job that is gone, or another key's
  }
}

// ---- Wiring ----

async function loadModels() {
  try {
    const response = await fetch("/v1/models", { headers: headers() });
    if (!response.ok) return;
    const select = $("#model");
    select.replaceChildren(select.options[0]);
    for (const name of (await response.json()).models) select.append(new Option(name, name));
  } catch {
    /* the page works with the default model */
  }
}

function setUpDrop() {
  const drop = $("#drop");
  const take = (files) => [...files].forEach(transcribe);
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    take(event.dataTransfer.files);
  });
  drop.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      $("#file").click();
    }
  });
  $("#file").addEventListener("change", (event) => {
    take(event.target.files);
    event.target.value = "";
  });
}

function setUpViewer() {
  const player = $("#player");
  player.addEventListener("timeupdate", highlightPlaying);
  player.addEventListener("seeked", highlightPlaying);
  player.addEventListener("loadedmetadata", () => player.classList.toggle("audio-only", player.videoWidth === 0));
  player.addEventListener("error", () => viewer.jobId && player.getAttribute("src") && noMedia("the browser cannot load it"));
  $("#cues").addEventListener("click", (event) => {
    const cue = event.target.closest(".cue");
    const selecting = !window.getSelection().isCollapsed && !event.target.closest(".time");
    if (cue && !selecting) playFrom(Number(cue.dataset.index));
  });
  $("#search").addEventListener("input", search);
  $("#search").addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault();
      nextMatch(event.shiftKey);
    }
  });
  $("#copy").addEventListener("click", copyText);
  $(".downloads").addEventListener("click", (event) => {
    const format = event.target.dataset?.format;
    if (format && viewer.view) download(viewer.view, format);
  });
  $("#close-viewer").addEventListener("click", closeViewer);
  $("#viewer").addEventListener("keydown", (event) => {
    if (event.key === "Escape" && event.target.id !== "search") closeViewer();
  });
}

async function setUp() {
  $("#api-key").value = localStorage.getItem("transcribe-api-key") || "";
  $("#api-key").addEventListener("change", () => {
    localStorage.setItem("transcribe-api-key", apiKey());
    closeViewer();
    loadModels();
    loadJobs().then(openFromAddress);
  });
  setUpDrop();
  setUpViewer();
  $("#more").addEventListener("click", () => loadJobs(true));
  $("#refresh").addEventListener("click", () => loadJobs());
  window.addEventListener("hashchange", openFromAddress);
  loadModels();
  await loadJobs();
  await openFromAddress();
}

setUp();
