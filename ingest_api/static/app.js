// The upload page: each dropped file becomes a job (POST /v1/transcribe, multipart); its progress
// is the job's own (GET /v1/jobs/{id}, as the worker reports it); results come from
// /v1/jobs/{id}/result. Fetches carry the API key when one is given, so downloads are blobs.
"use strict";

const POLL_MS = 500;
const ENDED = new Set(["finished", "failed", "cancelled", "deleted"]);
const $ = (selector) => document.querySelector(selector);

function headers() {
  const key = $("#api-key").value.trim();
  localStorage.setItem("transcribe-api-key", key);
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

function addJobCard(name) {
  const card = $("#job-template").content.firstElementChild.cloneNode(true);
  card.querySelector(".name").textContent = name;
  $("#jobs").prepend(card);
  const show = (state, percent, detail) => {
    card.className = `job ${state}`;
    card.dataset.state = state;
    card.querySelector(".state").textContent = percent === null ? state : `${state} · ${Math.round(percent)}%`;
    if (percent !== null) card.querySelector("progress").value = percent;
    card.querySelector(".detail").textContent = detail || "";
  };
  return { card, show };
}

function upload(file, show) {
  // XMLHttpRequest, not fetch: it reports the upload's own progress.
  return new Promise((resolve, reject) => {
    const form = new FormData();
    form.append("source_type", "upload");
    form.append("output", "srt");
    for (const name of ["language", "model", "task"]) {
      const value = $(`#${name}`).value.trim();
      if (value) form.append(name, value);
    }
    form.append("file", file, file.name);
    const request = new XMLHttpRequest();
    request.open("POST", "/v1/transcribe");
    for (const [name, value] of Object.entries(headers())) request.setRequestHeader(name, value);
    request.upload.onprogress = (event) => {
      if (event.lengthComputable) show("uploading", (100 * event.loaded) / event.total);
    };
    request.onload = () => {
      const response = new Response(request.responseText, { status: request.status, statusText: request.statusText });
      if (request.status === 202) resolve(JSON.parse(request.responseText));
      else errorText(response).then((text) => reject(new Error(text)));
    };
    request.onerror = () => reject(new Error("the server cannot be reached"));
    request.send(form);
  });
}

async function follow(jobId, show) {
  for (;;) {
    const response = await fetch(`/v1/jobs/${jobId}`, { headers: headers() });
    if (!response.ok) throw new Error(await errorText(response));
    const job = await response.json();
    const facts = [job.language && `language ${job.language}`, job.duration && `${job.duration.toFixed(1)} s of audio`];
    show(job.status, job.progress, job.error || facts.filter(Boolean).join(", "));
    if (ENDED.has(job.status)) return job;
    await new Promise((wake) => setTimeout(wake, POLL_MS));
  }
}

async function download(jobId, format, baseName) {
  const response = await fetch(`/v1/jobs/${jobId}/result?format=${format}`, { headers: headers() });
  if (!response.ok) throw new Error(await errorText(response));
  const link = document.createElement("a");
  link.href = URL.createObjectURL(await response.blob());
  link.download = `${baseName}.${format}`;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10000);
}

async function transcribe(file) {
  const { card, show } = addJobCard(file.name);
  show("uploading", 0);
  try {
    const accepted = await upload(file, show);
    card.dataset.jobId = accepted.job_id;
    show("queued", 0, `job ${accepted.job_id}`);
    const job = await follow(accepted.job_id, show);
    showWarnings(card, job.warnings || []);
    if (job.status === "finished") {
      const baseName = file.name.replace(/\.[^.]+$/, "") || accepted.job_id;
      const downloads = card.querySelector(".downloads");
      downloads.hidden = false;
      downloads.addEventListener("click", (event) => {
        const format = event.target.dataset?.format;
        if (format) download(accepted.job_id, format, baseName).catch((error) => show("finished", 100, error.message));
      });
    }
  } catch (error) {
    show("failed", null, error.message);
  }
}

function showWarnings(card, warnings) {
  // What the worker found worth telling (a weak language detection, no speech, a truncated file).
  const list = card.querySelector(".warnings");
  list.replaceChildren(...warnings.map((text) => Object.assign(document.createElement("li"), { textContent: text })));
  list.hidden = warnings.length === 0;
}

async function loadModels() {
  try {
    const response = await fetch("/v1/models", { headers: headers() });
    if (!response.ok) return;
    for (const name of (await response.json()).models) $("#model").append(new Option(name, name));
  } catch {
    /* the page works with the default model */
  }
}

function setUp() {
  $("#api-key").value = localStorage.getItem("transcribe-api-key") || "";
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
    if (event.key === "Enter" || event.key === " ") $("#file").click();
  });
  $("#file").addEventListener("change", (event) => {
    take(event.target.files);
    event.target.value = "";
  });
  loadModels();
}

setUp();
