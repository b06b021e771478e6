// videoseek web page: search and play from the matching moment, say which results were right and describe
// moments; add videos and follow them; run a collection (collections, re-index / retrain / rollback tasks with
// live progress, versions, example queries).
// Plain browser JavaScript, no build step. URLs are relative so the page works behind a path prefix.
"use strict";

const $ = (id) => document.getElementById(id);
const KEY_STORAGE = "videoseek.apiKey";
const COLLECTION_STORAGE = "videoseek.collection";
const POLL_MS = 1000;
const IDLE_POLL_MS = 5000;
const VIEWS = ["search", "videos", "admin"];
const state = {
  cursor: null,
  lastBody: null,
  busy: false,
  collections: [],
  videosCursor: null,
  videosTimer: null,
  tasksTimer: null,
  tasksWereLive: false,
  // What the API offers beyond the basics, read from its OpenAPI document once (see detectFeatures).
  features: { feedback: false, captions: false, versions: false, minRelevance: false, ownPairs: false, force: false },
};

// ------------------------------------------------------------------------------------------ basics

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
  el.hidden = !text;
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

function percent(value) {
  // Recall figures come in percent, as the training reports write them.
  return typeof value === "number" ? `${value.toFixed(1)}%` : "–";
}

function formatDate(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  return date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

function element(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value !== undefined && value !== null && value !== false) node.setAttribute(key, value === true ? "" : value);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

function current() {
  return $("collection").value;
}

function path(collection, rest = "") {
  return `collections/${encodeURIComponent(collection)}${rest}`;
}

async function detectFeatures() {
  // The lifecycle endpoints (training pairs, versions, calibrated relevance, retraining on the collection's own
  // pairs) come with some servers only: their controls stay hidden unless the OpenAPI document names them.
  try {
    const doc = await api("openapi.json");
    const paths = Object.keys(doc.paths || {});
    state.features.feedback = paths.includes("/collections/{name}/feedback");
    state.features.captions = paths.includes("/collections/{name}/captions");
    state.features.versions = paths.includes("/collections/{name}/versions");
    state.features.minRelevance = "min_relevance" in (requestSchema(doc, "/search").properties || {});
    const retrain = requestSchema(doc, "/collections/{name}/retrain");
    state.features.ownPairs = !(retrain.required || []).includes("data");
    state.features.force = "force" in (retrain.properties || {});
  } catch (_) {
    // An API without its document: the basic page still works.
  }
  $("caption-form").hidden = !state.features.captions;
  $("versions-panel").hidden = !state.features.versions;
  $("cutoff-label").hidden = !state.features.minRelevance;
  showRetrainOptions();
}

function requestSchema(doc, route) {
  // The JSON body a POST takes, its $ref (#/components/schemas/...) followed; {} when there is none.
  const schema = doc.paths?.[route]?.post?.requestBody?.content?.["application/json"]?.schema || {};
  if (!schema.$ref) return schema;
  return schema.$ref.split("/").slice(1).reduce((node, key) => node?.[key], doc) || {};
}

function showRetrainOptions() {
  // A server that trains only on a manifest needs its path: then that field is required and in view.
  const own = state.features.ownPairs;
  $("retrain-own").hidden = !own;
  $("retrain-data").required = !own;
  if (!own) {
    $("retrain-data").placeholder = "";
    $("retrain-advanced").open = true;
  }
  $("retrain-force-label").hidden = !state.features.force;
}

// ------------------------------------------------------------------------------------------ views

function showView(name) {
  const view = VIEWS.includes(name) ? name : "search";
  for (const v of VIEWS) $(`view-${v}`).hidden = v !== view;
  for (const link of document.querySelectorAll(".tabs a")) {
    if (link.dataset.view === view) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  stopPolling();
  setStatus("");
  if (view === "videos") loadVideos(false);
  if (view === "admin") loadAdmin();
}

function stopPolling() {
  clearTimeout(state.videosTimer);
  clearTimeout(state.tasksTimer);
  state.videosTimer = state.tasksTimer = null;
}

function onHash() {
  showView(location.hash.replace("#", ""));
}

// ------------------------------------------------------------------------------------------ collections

async function loadCollections(selectName) {
  const select = $("collection");
  try {
    const data = await api("collections");
    state.collections = data.collections;
    const previous = selectName || select.value || localStorage.getItem(COLLECTION_STORAGE);
    select.replaceChildren();
    for (const c of data.collections) {
      select.append(element("option", { value: c.name, text: `${c.name} (${c.clips} clips)` }));
    }
    if (previous && data.collections.some((c) => c.name === previous)) select.value = previous;
    if (!data.collections.length) {
      setStatus("No collections yet: create one under Admin.");
    }
    renderCollectionList();
    onCollectionChanged();
  } catch (error) {
    setStatus(explain(error), true);
  }
}

function onCollectionChanged() {
  const name = current();
  if (name) localStorage.setItem(COLLECTION_STORAGE, name);
  $("videos-collection").textContent = name || "–";
  $("tasks-collection").textContent = name || "–";
  $("versions-collection").textContent = name || "–";
  loadExamples();
  const view = location.hash.replace("#", "");
  if (view === "videos") loadVideos(false);
  if (view === "admin") loadAdmin();
}

function renderCollectionList() {
  const list = $("collection-list");
  list.replaceChildren();
  for (const c of state.collections) {
    const adapter = c.adapter_version ? `adapter ${c.adapter_version.slice(0, 12)}` : "plain CLIP";
    list.append(
      element(
        "li",
        {},
        element("span", { class: "name", title: c.name, text: c.name }),
        element("span", { class: "muted", text: `${c.videos ?? "?"} videos · ${c.clips} clips · ${adapter}` }),
        element("span", { class: "muted", text: `created ${formatDate(c.created_at)}` }),
        element("button", {
          type: "button",
          class: "ghost danger",
          text: "Delete",
          "aria-label": `Delete collection ${c.name}`,
          onclick: () => deleteCollection(c.name),
        }),
      ),
    );
  }
  if (!state.collections.length) list.append(element("li", { class: "muted", text: "No collections yet." }));
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

async function deleteCollection(name) {
  if (!confirm(`Delete collection “${name}” with all its videos, clips and jobs? This cannot be undone.`)) return;
  try {
    const done = await api(path(name), { method: "DELETE" });
    setStatus(`Collection “${name}” deleted (${done.clips_removed} clips).`);
    await loadCollections();
  } catch (error) {
    setStatus(explain(error), true);
  }
}

// ------------------------------------------------------------------------------------------ search

async function loadExamples() {
  const box = $("examples");
  const list = $("example-list");
  list.replaceChildren();
  box.hidden = true;
  $("examples-text").value = "";
  const name = current();
  if (!name) return;
  try {
    const data = await api(path(name, "/examples"));
    $("examples-text").value = data.examples.join("\n");
    for (const query of data.examples) {
      list.append(
        element(
          "li",
          {},
          element("button", {
            type: "button",
            class: "chip",
            text: query,
            onclick: () => {
              $("query").value = query;
              $("search-form").requestSubmit();
            },
          }),
        ),
      );
    }
    box.hidden = !data.examples.length;
  } catch (_) {
    // No examples (or no access to them): nothing to offer.
  }
}

function relevanceOf(result, top) {
  // Phase 2: the API's `relevance` in [0, 1]. Until then the bar compares a result with the best one shown.
  if (typeof result.relevance === "number") return { value: result.relevance, absolute: true };
  const value = top > 0 ? Math.max(0, Math.min(1, result.score / top)) : 0;
  return { value, absolute: false };
}

function relevanceWords(value, absolute) {
  if (!absolute) return value >= 0.98 ? "best match" : `${Math.round(value * 100)}% of best`;
  if (value >= 0.75) return "strong match";
  if (value >= 0.5) return "good match";
  if (value >= 0.25) return "weak match";
  return "poor match";
}

function renderResult(result, collection, top, query) {
  const node = $("result-template").content.firstElementChild.cloneNode(true);
  const name = result.source_name || result.video_id.slice(0, 12);
  const img = node.querySelector("img");
  img.src = result.thumbnail_url;
  img.alt = "";
  img.addEventListener("error", () => node.classList.add("no-thumb"), { once: true });
  const thumb = node.querySelector(".thumb");
  thumb.setAttribute("aria-label", `Play ${name} from ${formatTime(result.start_s)}`);
  thumb.addEventListener("click", () => play(result, collection));
  node.querySelector(".time").textContent = `${formatTime(result.start_s)}–${formatTime(result.end_s)}`;
  const label = node.querySelector(".name");
  label.textContent = name;
  label.title = result.source_name || result.video_id;
  const rel = relevanceOf(result, top);
  const words = relevanceWords(rel.value, rel.absolute);
  node.querySelector(".meter > span").style.width = `${Math.round(rel.value * 100)}%`;
  node.querySelector(".words").textContent = words;
  node.querySelector(".relevance").title = `${words} (score ${result.score.toFixed(3)})`;
  node.dataset.start = String(result.start_s);
  node.dataset.videoId = result.video_id;
  node.dataset.clipId = result.clip_id;
  if (state.features.feedback) wireFeedback(node, collection, query, result);
  return node;
}

function wireFeedback(node, collection, query, result) {
  // Thumbs up / down become training pairs of the collection (the lifecycle's feedback endpoint).
  const box = node.querySelector(".feedback");
  box.hidden = false;
  for (const [selector, relevant] of [
    [".up", true],
    [".down", false],
  ]) {
    const button = box.querySelector(selector);
    button.addEventListener("click", async () => {
      try {
        await api(path(collection, "/feedback"), {
          method: "POST",
          json: { query, clip_id: result.clip_id, relevant },
        });
        for (const b of box.querySelectorAll("button")) b.setAttribute("aria-pressed", String(b === button));
        setStatus(relevant ? "Thanks: marked as a right result." : "Thanks: marked as a wrong result.");
      } catch (error) {
        setStatus(explain(error), true);
      }
    });
  }
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
    if (!append) {
      grid.replaceChildren();
      state.top = data.results.length ? data.results[0].score : 0;
    }
    for (const result of data.results) grid.append(renderResult(result, body.collection, state.top, body.query));
    state.cursor = data.next_cursor;
    state.lastBody = body;
    $("more-button").hidden = !data.next_cursor;
    $("empty").hidden = true;
    $("examples").hidden = grid.children.length > 0 || !$("example-list").children.length;
    const shown = grid.children.length;
    const ms = Math.round(performance.now() - started);
    setStatus("");
    const summary = $("result-summary");
    summary.textContent = shown ? `${shown} result${shown === 1 ? "" : "s"} (${ms} ms)` : noResults(body);
    summary.hidden = false;
  } catch (error) {
    setStatus(explain(error), true);
  } finally {
    state.busy = false;
    $("search-button").disabled = false;
  }
}

function noResults(body) {
  if (!body.min_relevance) return "No matching clips.";
  return "No matches above the cut-off: set “Hide weak matches” to “no” to see weaker ones.";
}

function onSearch(event) {
  event.preventDefault();
  const collection = current();
  const query = $("query").value.trim();
  if (!collection) return setStatus("Pick a collection first.", true);
  if (!query) return;
  if (location.hash && location.hash !== "#search") location.hash = "#search";
  const body = { collection, query, limit: 24, group_by: $("group-video").checked ? "video" : "clip" };
  const cutoff = Number($("cutoff").value);
  if (state.features.minRelevance && cutoff > 0) body.min_relevance = cutoff;
  runSearch(body, false);
}

function onCutoff() {
  // A new cut-off applies to the query on screen at once.
  if ($("query").value.trim() && state.lastBody) $("search-form").requestSubmit();
}

function onMore() {
  if (!state.cursor || !state.lastBody) return;
  runSearch({ ...state.lastBody, cursor: state.cursor }, true);
}

// ------------------------------------------------------------------------------------------ player

const MEDIA_ERRORS = {
  1: "Playback was stopped.",
  2: "The video could not be loaded (network error).",
  3: "Your browser could not decode this video.",
  4: "Your browser cannot play this video's format (a browser-playable copy may still be on its way).",
};

function play(item, collection) {
  const video = $("player-video");
  const start = item.start_s || 0;
  $("player-title").textContent = item.source_name || item.video_id;
  $("player-title").title = item.source_name || item.video_id;
  const range = item.end_s !== undefined
    ? `${formatTime(start)}–${formatTime(item.end_s)} · best match at ${formatTime(item.best_frame_s)}`
    : "";
  $("player-range").textContent = [collection, range].filter(Boolean).join(" · ");
  $("player-error").hidden = true;
  setCaptionStatus("");
  video.hidden = false;
  state.playing = { item, collection };
  const download = $("player-download");
  download.href = item.file_url || "#";
  download.hidden = !item.file_url;
  // The #t= media fragment starts playback at start_s; setting currentTime as well covers
  // browsers that ignore fragments on some containers.
  video.src = item.playback_url || item.file_url;
  video.dataset.start = String(start);
  video.addEventListener(
    "loadedmetadata",
    () => {
      if (Math.abs(video.currentTime - start) > 0.25) video.currentTime = start;
      video.play().catch((error) => {
        // Autoplay refused: the controls are there; any other reason is reported by the error event.
        if (error.name !== "NotAllowedError" && error.name !== "AbortError" && error.name !== "NotSupportedError") {
          showPlayerError(error.message);
        }
      });
    },
    { once: true },
  );
  const dialog = $("player");
  if (!dialog.open) dialog.showModal();
}

async function onPlayerError() {
  const video = $("player-video");
  if (!video.getAttribute("src")) return; // cleared on close
  const code = video.error ? video.error.code : 0;
  const fileUrl = state.playing && state.playing.item.file_url;
  // "Source not supported" is also what a missing file looks like to the player: ask the server which it is.
  if (code === 4 && fileUrl && !(await fileIsThere(fileUrl))) {
    showPlayerError("This video's file is no longer stored on the server: it cannot be played or downloaded.", false);
    return;
  }
  showPlayerError(MEDIA_ERRORS[code] || "This video cannot be played here.", Boolean(fileUrl));
}

async function fileIsThere(url) {
  try {
    const headers = { Range: "bytes=0-0" };
    if (apiKey()) headers.Authorization = "Bearer " + apiKey();
    const response = await fetch(url, { headers });
    return response.ok;
  } catch (_) {
    return true; // cannot tell: offer the download
  }
}

function showPlayerError(text, offerDownload = true) {
  $("player-error-text").textContent = text;
  $("player-download").hidden = !offerDownload;
  $("player-error").hidden = false;
  $("player-video").hidden = true;
}

function closePlayer() {
  const video = $("player-video");
  video.pause();
  video.removeAttribute("src");
  video.load();
  $("player").close();
}

function setCaptionStatus(text, isError = false) {
  // Inside the player: the page's status line sits behind the modal dialog.
  const el = $("caption-status");
  el.textContent = text;
  el.classList.toggle("error", isError);
}

function momentSpan(seconds) {
  // The moment on screen, two seconds either side (to a tenth of a second): a span as long as a typical clip.
  const tenth = (x) => Math.round(x * 10) / 10;
  return { start_s: tenth(Math.max(0, seconds - 2)), end_s: tenth(seconds + 2) };
}

async function onCaption(event) {
  // The caption becomes a training pair of the collection (POST /collections/{name}/captions).
  event.preventDefault();
  const { item, collection } = state.playing || {};
  const text = $("caption-text").value.trim();
  if (!item || !text) return;
  const caption = { video_id: item.video_id, text, ...momentSpan($("player-video").currentTime) };
  try {
    await api(path(collection, "/captions"), { method: "POST", json: { captions: [caption] } });
    $("caption-text").value = "";
    const span = `${formatTime(caption.start_s)}–${formatTime(caption.end_s)}`;
    setCaptionStatus(`Saved for ${span}: it trains the collection's next adapter.`);
  } catch (error) {
    setCaptionStatus(explain(error), true);
  }
}

// ------------------------------------------------------------------------------------------ videos

const STATE_WORDS = { queued: "queued", processing: "processing", indexed: "indexed", failed: "failed" };

function videoRow(video) {
  const name = video.source_name || video.video_id.slice(0, 12);
  const thumb = video.thumbnail_url
    ? element("img", { src: video.thumbnail_url, alt: "", loading: "lazy" })
    : element("span", { class: "no-thumb-box", "aria-hidden": "true" });
  const stateCell = element("td", { class: `state ${video.state}` });
  stateCell.append(element("span", { class: "badge", text: STATE_WORDS[video.state] }));
  if (video.state === "processing" && video.job) {
    stateCell.append(
      element("progress", { max: "1", value: String(video.job.progress), "aria-label": `${name}: ${video.job.stage}` }),
      element("span", { class: "muted", text: video.job.stage }),
    );
  }
  if (video.state === "failed") stateCell.append(element("span", { class: "reason", text: video.reason || "unknown reason" }));
  if (video.playback === "pending") stateCell.append(element("span", { class: "muted", text: "browser copy on its way" }));
  if (video.playback === "failed") stateCell.append(element("span", { class: "muted", text: "no browser copy: download to watch" }));
  const actions = element("td", { class: "actions" });
  if (video.playback_url) {
    actions.append(
      element("button", {
        type: "button",
        class: "ghost",
        text: "Play",
        "aria-label": `Play ${name}`,
        onclick: () => play({ ...video, start_s: 0 }, video.collection),
      }),
    );
  }
  if (video.file_url) {
    actions.append(element("a", { href: video.file_url, download: name, class: "button ghost", text: "Download", "aria-label": `Download ${name}` }));
  }
  if (video.state === "indexed" || video.state === "failed") {
    // A failed row is deleted to dismiss it (and whatever file it left).
    actions.append(
      element("button", {
        type: "button",
        class: "ghost danger",
        text: "Delete",
        "aria-label": `Delete ${name}`,
        onclick: () => deleteVideo(video),
      }),
    );
  }
  const problems = video.problems.length ? video.problems.join("\n") : null;
  const facts = [
    video.state === "failed" ? null : `${video.clips} clip${video.clips === 1 ? "" : "s"}`,
    video.duration_s != null ? formatTime(video.duration_s) : null,
    formatDate(video.created_at),
  ].filter(Boolean); // the phone layout's one line for the clips, length and date columns
  return element(
    "tr",
    { dataset: { videoId: video.video_id, state: video.state } },
    element("td", { class: "thumb-cell" }, thumb),
    element(
      "td",
      { class: "name-cell" },
      element("span", { class: "name", title: video.source_name || video.video_id, text: name }),
      element("span", { class: "muted sub", text: facts.join(" · ") }),
      problems
        ? element("span", { class: "muted problems", title: problems, text: `${video.problems.length} problem${video.problems.length > 1 ? "s" : ""}` })
        : null,
    ),
    stateCell,
    element("td", { class: "num", text: video.state === "failed" ? "–" : String(video.clips) }),
    element("td", { class: "num", text: video.duration_s != null ? formatTime(video.duration_s) : "–" }),
    element("td", { class: "date", text: formatDate(video.created_at) }),
    actions,
  );
}

async function loadVideos(append) {
  const name = current();
  clearTimeout(state.videosTimer);
  if (!name) return;
  try {
    const cursor = append && state.videosCursor ? `&cursor=${encodeURIComponent(state.videosCursor)}` : "";
    const data = await api(path(name, `/videos?limit=50${cursor}`));
    const rows = $("video-rows");
    if (!append) rows.replaceChildren();
    for (const video of data.videos) rows.append(videoRow(video));
    state.videosCursor = data.next_cursor;
    $("videos-more").hidden = !data.next_cursor;
    const all = Array.from(rows.children).map((r) => r.dataset.state);
    const count = (s) => all.filter((x) => x === s).length;
    $("videos-summary").textContent = all.length
      ? `${count("indexed")} indexed · ${count("queued") + count("processing")} in progress · ${count("failed")} failed${data.next_cursor ? " (more below)" : ""}`
      : "No videos yet: add some above.";
    // While something is in the works, follow it (only the first page, only on this view).
    if (!append && (count("queued") || count("processing")) && location.hash === "#videos") {
      state.videosTimer = setTimeout(() => loadVideos(false), 2 * POLL_MS);
    }
  } catch (error) {
    setStatus(explain(error), true);
  }
}

async function deleteVideo(video) {
  const name = video.source_name || video.video_id;
  if (!confirm(`Remove “${name}” from ${video.collection}?`)) return;
  try {
    await api(path(video.collection, `/videos/${video.video_id}`), { method: "DELETE" });
    setStatus(`Removed “${name}”.`);
    loadVideos(false);
  } catch (error) {
    setStatus(explain(error), true);
  }
}

function addJobRow(name) {
  const label = element("span", { class: "name", title: name, text: name });
  const progress = element("progress", { max: "1", value: "0", "aria-label": `${name}: progress` });
  const stage = element("span", { class: "stage", text: "uploading" });
  const li = element("li", {}, label, progress, stage);
  $("jobs").prepend(li);
  return { li, progress, stage };
}

function finishRow(row, ok, text) {
  row.li.classList.add(ok ? "ok" : "failed");
  row.stage.textContent = text;
  if (ok) row.progress.value = 1;
  else row.progress.remove(); // a failed upload has no progress to show
}

function uploadOne(file, collection, metadata, row) {
  // XMLHttpRequest rather than fetch: it reports upload progress.
  return new Promise((resolve, reject) => {
    const form = new FormData();
    form.append("file", file, file.name);
    if (metadata) form.append("metadata", metadata);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", path(collection, "/videos"));
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
      finishRow(row, true, job.duplicate ? "already indexed" : job.playback === "pending" ? "done (browser copy on its way)" : "done");
      return job;
    }
    if (job.stage === "failed") {
      finishRow(row, false, "failed: " + (job.reason || "unknown reason"));
      return job;
    }
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

async function onUpload(event) {
  event.preventDefault();
  const collection = current();
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
        finishRow(row, false, explain(error));
      }
    }),
  );
  $("upload-form").reset();
  loadCollections(collection);
  loadVideos(false);
}

// ------------------------------------------------------------------------------------------ admin

function loadAdmin() {
  const info = state.collections.find((c) => c.name === current());
  $("reindex-adapter").value = info && info.adapter_version ? info.adapter_version : "";
  loadTasks();
  loadVersions();
}

function taskProgress(task) {
  const p = task.progress || {};
  if (p.total_steps) return { value: (p.step || 0) / p.total_steps, text: p.message || `step ${p.step} of ${p.total_steps}` };
  if (p.videos_total) return { value: (p.videos_done || 0) / p.videos_total, text: `${p.stage || "working"}: ${p.videos_done || 0} of ${p.videos_total} videos` };
  return { value: null, text: p.stage || p.message || "" };
}

const TASK_NAMES = { reindex: "Re-index", retrain: "Retrain", rollback: "Rollback" };

function taskName(kind) {
  return TASK_NAMES[kind] || "Task";
}

function retrainOutcome(r) {
  // The server validated the new adapter against the live one on held-out pairs and kept the better one.
  const v = r.validation || {};
  const before = percent(v.current?.["R@1"]);
  const after = percent(v.candidate?.["R@1"]);
  const held = v.pairs ? ` on ${v.pairs} held-out pairs` : "";
  const verdict =
    r.outcome === "installed"
      ? `Installed the new adapter: R@1 from ${before} to ${after}${held}`
      : `Kept the current adapter: R@1 ${before}, the new one ${after}${held}`;
  const p = r.training_pairs;
  const trained = p ? `; trained on ${p.captions} captions, ${p.feedback} feedback, ${p.subtitles} subtitles` : "";
  const chosen = r.serving?.pooling ? `; its searches pool frames by ${r.serving.pooling} (better on its dev captions)` : "";
  return verdict + trained + chosen;
}

function adapterName(version) {
  return version ? `adapter ${version.slice(0, 12)}` : "plain CLIP";
}

function switchSummary(task, r) {
  // A re-index or rollback: which version serves now, what it holds, and what changed while it ran.
  const verb = task.kind === "rollback" ? "Rolled back to" : "Re-indexed with";
  const counts = [`${r.videos} videos`, `${r.clips} clips`];
  if (r.caught_up) counts.push(`${r.caught_up} added meanwhile`);
  if (r.removed) counts.push(`${r.removed} deleted meanwhile`);
  if (r.missing?.length) counts.push(`${r.missing.length} left out (no cached frames)`);
  return `${verb} ${adapterName(r.new_adapter_version)} (version ${r.physical}): ${counts.join(", ")}`;
}

function taskSummary(task) {
  const r = task.result || {};
  if (task.kind === "retrain" && r.outcome) return retrainOutcome(r);
  if (r.physical !== undefined && r.videos !== undefined) return switchSummary(task, r);
  return "finished";
}

function taskRow(task) {
  const li = element("li", {
    class: `task ${task.state}`,
    dataset: { taskId: task.task_id, state: task.state, kind: task.kind || "" },
  });
  li.append(
    element("span", { class: "name", text: taskName(task.kind), title: task.task_id }),
    element("span", { class: "badge", text: task.cancel_requested && task.state === "running" ? "stopping" : task.state }),
  );
  const running = task.state === "running" || task.state === "queued";
  if (running) {
    const { value, text } = taskProgress(task);
    const bar = element("progress", { max: "1", "aria-label": `${taskName(task.kind)} progress` });
    if (value !== null) bar.value = value;
    // Bar and words share the row's third column, so that Cancel stays in the fourth.
    li.append(element("span", { class: "task-progress" }, bar, element("span", { class: "muted", text, title: text })));
    li.append(
      element("button", {
        type: "button",
        class: "ghost danger",
        text: "Cancel",
        disabled: task.cancel_requested,
        "aria-label": `Cancel ${taskName(task.kind).toLowerCase()}`,
        onclick: () => cancelTask(task.task_id),
      }),
    );
  } else if (task.state === "done") {
    li.append(element("span", { class: "muted", text: taskSummary(task) }));
  } else {
    li.append(element("span", { class: "reason", text: task.reason || task.state }));
  }
  return li;
}

async function loadTasks() {
  const name = current();
  clearTimeout(state.tasksTimer);
  if (!name) return;
  try {
    const data = await api(path(name, "/tasks?limit=10"));
    const list = $("task-list");
    list.replaceChildren(...data.tasks.map(taskRow));
    if (!data.tasks.length) list.append(element("li", { class: "muted", text: "No tasks yet." }));
    const live = data.tasks.some((t) => t.state === "running" || t.state === "queued");
    // Live tasks every second; otherwise every few seconds, so a task started elsewhere (the CLI, another
    // admin) shows up without a reload.
    if (location.hash === "#admin") state.tasksTimer = setTimeout(loadTasks, live ? POLL_MS : IDLE_POLL_MS);
    if (!live && state.tasksWereLive) {
      const last = data.tasks[0];
      const ended = last && (last.state === "done" ? taskSummary(last) : last.reason || last.state);
      if (last) setStatus(`${taskName(last.kind)} of “${name}” ended: ${ended}.`, last.state === "failed");
      loadCollections(name); // a finished task changes the adapter, the counts and the versions
    }
    state.tasksWereLive = live;
  } catch (error) {
    setStatus(explain(error), true);
  }
}

async function startTask(kind, body) {
  const name = current();
  if (!name) return setStatus("Pick a collection first.", true);
  try {
    const accepted = await api(path(name, `/${kind}`), { method: "POST", json: body });
    setStatus(`${taskName(kind)} of “${name}” started.`);
    state.tasksWereLive = true;
    await loadTasks();
    return accepted;
  } catch (error) {
    setStatus(explain(error), true);
  }
}

function onReindex(event) {
  event.preventDefault();
  const adapter = $("reindex-adapter").value.trim() || null;
  startTask("reindex", { adapter, allow_missing: $("reindex-missing").checked });
}

function retrainBody() {
  // Only what the admin filled in: the server's defaults (the collection's own pairs) cover the rest.
  const body = {};
  const data = $("retrain-data").value.trim();
  if (data) body.data = data;
  if ($("retrain-method").value) body.method = $("retrain-method").value;
  if ($("retrain-epochs").value) body.epochs = Number($("retrain-epochs").value);
  if ($("retrain-current").checked) body.from_current = true;
  if ($("retrain-force").checked) body.force = true;
  return body;
}

function onRetrain(event) {
  event.preventDefault();
  startTask("retrain", retrainBody());
}

// ------------------------------------------------------------------------------------------ versions

function versionRow(version) {
  const adapter = version.adapter_version ? `adapter ${version.adapter_version.slice(0, 12)}` : "plain CLIP";
  // metrics is what the retrain that made its adapter measured: the candidate's R@1 on held-out pairs
  const r1 = version.metrics?.validation?.candidate?.["R@1"];
  const recall = typeof r1 === "number" ? `R@1 ${percent(r1)}` : null;
  const pooling = `${version.pooling === "mean" ? "mean" : "text-conditioned"} pooling`;
  const facts = [adapter, `${version.points} clips`, recall, pooling, `created ${formatDate(version.created_at)}`];
  const rollback = element("button", {
    type: "button",
    class: "ghost",
    text: "Roll back to this",
    "aria-label": `Roll back to this: ${version.physical}`,
    onclick: () => startTask("rollback", { version: version.physical }),
  });
  return element(
    "li",
    { class: `version${version.live ? " live" : ""}`, dataset: { physical: version.physical, live: String(version.live) } },
    element("span", { class: "name", title: version.physical, text: version.physical }),
    // The badge column stays in place on every row, so that the facts line up.
    element("span", { class: "badge", text: version.live ? "live" : "standby" }),
    element("span", { class: "muted", text: facts.filter(Boolean).join(" · ") }),
    version.live ? null : rollback,
  );
}

async function loadVersions() {
  const name = current();
  if (!state.features.versions || !name) return;
  try {
    const data = await api(path(name, "/versions"));
    const list = $("version-list");
    list.replaceChildren(...data.versions.map(versionRow));
    if (!data.versions.length) list.append(element("li", { class: "muted", text: "No versions yet." }));
  } catch (error) {
    setStatus(explain(error), true);
  }
}

async function cancelTask(taskId) {
  try {
    await api(`tasks/${encodeURIComponent(taskId)}/cancel`, { method: "POST" });
    setStatus("Asked the task to stop: it ends at its next safe point.");
    loadTasks();
  } catch (error) {
    setStatus(explain(error), true);
  }
}

async function onExamples(event) {
  event.preventDefault();
  const name = current();
  if (!name) return;
  const examples = $("examples-text").value.split("\n").map((q) => q.trim()).filter(Boolean);
  try {
    await api(path(name, "/examples"), { method: "PUT", json: { examples } });
    setStatus(`Example queries of “${name}” saved.`);
    loadExamples();
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
  $("reindex-form").addEventListener("submit", onReindex);
  $("retrain-form").addEventListener("submit", onRetrain);
  $("examples-form").addEventListener("submit", onExamples);
  $("caption-form").addEventListener("submit", onCaption);
  $("key-button").addEventListener("click", onKey);
  $("collection").addEventListener("change", onCollectionChanged);
  $("videos-refresh").addEventListener("click", () => loadVideos(false));
  $("videos-more").addEventListener("click", () => loadVideos(true));
  $("tasks-refresh").addEventListener("click", loadTasks);
  $("versions-refresh").addEventListener("click", loadVersions);
  $("cutoff").addEventListener("change", onCutoff);
  $("player-close").addEventListener("click", closePlayer);
  $("player").addEventListener("cancel", closePlayer);
  $("player-video").addEventListener("error", onPlayerError);
  window.addEventListener("hashchange", onHash);
  const params = new URLSearchParams(location.search);
  detectFeatures().then(() =>
    loadCollections(params.get("collection")).then(() => {
      onHash();
      if (params.get("q")) {
        $("query").value = params.get("q");
        $("search-form").requestSubmit();
      }
    }),
  );
});
