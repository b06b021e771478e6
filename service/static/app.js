// videoseek web page: search, play from the matching moment, upload with live job progress.
// Plain browser JavaScript, no build step. URLs are relative so the page works behind a path prefix.
"use strict";

const $ = (id) => document.getElementById(id);
const KEY_STORAGE = "videoseek.apiKey";
const state = { cursor: null, lastBody: null, busy: false };

function apiKey() {
  return localStorage.getItem(KEY_STORAGE) || "";
}

async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  if (apiKey()) headers.set("Authorization", "Bearer " + apiKey());
  if (options.json !== undefined) {
    headers.set("Content-Type", "application/json");
    options.body = JSON.stringify(options.json);
  }
  const response = await fetch(path, { ...options, headers });
  let body = null;
  try {
    body = await response.json();
  } catch (_) {
    body = null;
  }
  if (!response.ok) {
    const reason = (body && (body.reason || body.detail)) || response.statusText;
    const error = new Error(reason);
    error.status = response.status;
    throw error;
  }
  return body;
}

function setStatus(text, isError = false) {
  const el = $("status");
  el.textContent = text;
  el.classList.toggle("error", isError);
}

function explain(error) {
  if (error.status === 401) return "This server needs an API key: click “API key”. (" + error.message + ")";
  if (error.status === 403) return "Not allowed: " + error.message;
  return error.message || String(error);
}

function formatTime(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const rest = String(s % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${rest}` : `${m}:${rest}`;
}

async function loadCollections(selectName) {
  const select = $("collection");
  try {
    const data = await api("collections");
    const previous = selectName || select.value || localStorage.getItem("videoseek.collection");
    select.replaceChildren();
    for (const c of data.collections) {
      const option = document.createElement("option");
      option.value = c.name;
      option.textContent = `${c.name} (${c.clips} clips)`;
      select.append(option);
    }
    if (previous && data.collections.some((c) => c.name === previous)) select.value = previous;
    if (!data.collections.length) {
      setStatus("No collections yet: create one under “Add videos”.");
      $("manage").open = true;
    }
  } catch (error) {
    setStatus(explain(error), true);
  }
}

function renderResult(result, collection) {
  const node = $("result-template").content.firstElementChild.cloneNode(true);
  const img = node.querySelector("img");
  img.src = result.thumbnail_url;
  img.alt = `${result.source_name || result.video_id} at ${formatTime(result.start_s)}`;
  img.addEventListener("error", () => node.classList.add("no-thumb"), { once: true });
  node.querySelector(".time").textContent = `${formatTime(result.start_s)}–${formatTime(result.end_s)}`;
  node.querySelector(".name").textContent = result.source_name || result.video_id.slice(0, 12);
  node.querySelector(".score").textContent = result.score.toFixed(3);
  node.dataset.start = String(result.start_s);
  node.dataset.videoId = result.video_id;
  const open = () => play(result, collection);
  node.addEventListener("click", open);
  node.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      open();
    }
  });
  return node;
}

function play(result, collection) {
  const video = $("player-video");
  $("player-title").textContent = result.source_name || result.video_id;
  $("player-range").textContent =
    `${collection} · ${formatTime(result.start_s)}–${formatTime(result.end_s)} · best match at ${formatTime(result.best_frame_s)}`;
  // The #t= media fragment starts playback at start_s; setting currentTime as well covers
  // browsers that ignore fragments on some containers.
  video.src = result.playback_url;
  video.dataset.start = String(result.start_s);
  video.addEventListener(
    "loadedmetadata",
    () => {
      if (Math.abs(video.currentTime - result.start_s) > 0.25) video.currentTime = result.start_s;
      video.play().catch(() => {});
    },
    { once: true },
  );
  const dialog = $("player");
  if (!dialog.open) dialog.showModal();
}

function closePlayer() {
  const video = $("player-video");
  video.pause();
  video.removeAttribute("src");
  video.load();
  $("player").close();
}

async function runSearch(body, append) {
  if (state.busy) return;
  state.busy = true;
  $("search-button").disabled = true;
  setStatus(append ? "Loading more…" : "Searching…");
  try {
    const started = performance.now();
    const data = await api("search", { method: "POST", json: body });
    const grid = $("results");
    if (!append) grid.replaceChildren();
    for (const result of data.results) grid.append(renderResult(result, body.collection));
    state.cursor = data.next_cursor;
    state.lastBody = body;
    $("more-button").hidden = !data.next_cursor;
    $("empty").hidden = true;
    const shown = grid.children.length;
    const ms = Math.round(performance.now() - started);
    setStatus(shown ? `${shown} result${shown === 1 ? "" : "s"} (${ms} ms)` : "No matching clips.");
  } catch (error) {
    setStatus(explain(error), true);
  } finally {
    state.busy = false;
    $("search-button").disabled = false;
  }
}

function onSearch(event) {
  event.preventDefault();
  const collection = $("collection").value;
  const query = $("query").value.trim();
  if (!collection) return setStatus("Pick a collection first.", true);
  if (!query) return;
  localStorage.setItem("videoseek.collection", collection);
  const body = { collection, query, limit: 24, group_by: $("group-video").checked ? "video" : "clip" };
  runSearch(body, false);
}

function onMore() {
  if (!state.cursor || !state.lastBody) return;
  runSearch({ ...state.lastBody, cursor: state.cursor }, true);
}

function addJobRow(name) {
  const li = document.createElement("li");
  const label = document.createElement("span");
  label.textContent = name;
  const progress = document.createElement("progress");
  progress.max = 1;
  progress.value = 0;
  const stage = document.createElement("span");
  stage.className = "stage";
  stage.textContent = "uploading";
  li.append(label, progress, stage);
  $("jobs").prepend(li);
  return { li, progress, stage };
}

function uploadOne(file, collection, metadata, row) {
  // XMLHttpRequest rather than fetch: it reports upload progress.
  return new Promise((resolve, reject) => {
    const form = new FormData();
    form.append("file", file, file.name);
    if (metadata) form.append("metadata", metadata);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `collections/${encodeURIComponent(collection)}/videos`);
    if (apiKey()) xhr.setRequestHeader("Authorization", "Bearer " + apiKey());
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) row.progress.value = (e.loaded / e.total) * 0.3;
    };
    xhr.onload = () => {
      let body = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch (_) {}
      if (xhr.status === 202 && body) resolve(body);
      else reject(new Error((body && body.reason) || `upload failed (${xhr.status})`));
    };
    xhr.onerror = () => reject(new Error("network error during upload"));
    xhr.send(form);
  });
}

async function followJob(jobId, row) {
  for (;;) {
    const job = await api(`jobs/${encodeURIComponent(jobId)}`);
    row.progress.value = 0.3 + 0.7 * job.progress;
    row.stage.textContent = job.duplicate ? "already indexed" : job.stage;
    if (job.stage === "done") {
      row.li.classList.add("ok");
      return job;
    }
    if (job.stage === "failed") {
      row.li.classList.add("failed");
      row.stage.textContent = "failed: " + (job.reason || "unknown reason");
      return job;
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
}

async function onUpload(event) {
  event.preventDefault();
  const collection = $("collection").value;
  if (!collection) return setStatus("Create or pick a collection first.", true);
  const metadata = $("upload-metadata").value.trim();
  const files = Array.from($("upload-file").files);
  await Promise.all(
    files.map(async (file) => {
      const row = addJobRow(file.name);
      try {
        const accepted = await uploadOne(file, collection, metadata, row);
        await followJob(accepted.job_id, row);
      } catch (error) {
        row.li.classList.add("failed");
        row.stage.textContent = explain(error);
      }
    }),
  );
  $("upload-form").reset();
  loadCollections(collection);
}

async function onCreate(event) {
  event.preventDefault();
  const name = $("create-name").value.trim();
  try {
    await api("collections", { method: "POST", json: { name } });
    setStatus(`Collection “${name}” created.`);
    $("create-form").reset();
    await loadCollections(name);
  } catch (error) {
    setStatus(explain(error), true);
  }
}

function onKey() {
  const key = prompt("API key (leave empty to send none):", apiKey());
  if (key === null) return;
  if (key) localStorage.setItem(KEY_STORAGE, key.trim());
  else localStorage.removeItem(KEY_STORAGE);
  loadCollections();
}

document.addEventListener("DOMContentLoaded", () => {
  $("search-form").addEventListener("submit", onSearch);
  $("more-button").addEventListener("click", onMore);
  $("upload-form").addEventListener("submit", onUpload);
  $("create-form").addEventListener("submit", onCreate);
  $("key-button").addEventListener("click", onKey);
  $("player-close").addEventListener("click", closePlayer);
  $("player").addEventListener("cancel", closePlayer);
  const params = new URLSearchParams(location.search);
  loadCollections(params.get("collection")).then(() => {
    if (params.get("q")) {
      $("query").value = params.get("q");
      $("search-form").requestSubmit();
    }
  });
});
