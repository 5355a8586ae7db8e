"use strict";
// The page of `python -m clients.service`: a camera or a photo goes to POST /v1/analyze; the faces come
// back with their emotions and explanation maps, drawn over the image, and each face's running emotion mix
// (the mean of its probabilities over the frames it was seen in) is listed beside it.

const $ = (id) => document.getElementById(id);
const view = $("view");
const ctx = view.getContext("2d");
const COLOURS = ["#ffca28", "#29b6f6", "#5c6bc0", "#ef5350", "#66bb6a", "#ab47bc", "#9e9e9e"];
const state = { models: [], stream: null, running: false, mixes: new Map(), times: [], frames: 0, overlays: 0 };
window.fer = state; // read by the browser tests

function setStatus(text) { $("status").textContent = text; }

async function loadModels() {
  const reply = await fetch("/v1/models");
  state.models = (await reply.json()).models;
  for (const m of state.models) $("model").add(new Option(`${m.name} (${m.classes.length} classes)`, m.name, m.default, m.default));
}

function currentModel() { return state.models.find((m) => m.name === $("model").value); }

async function analyze(blob, stream) {
  const query = new URLSearchParams({ model: $("model").value });
  const model = currentModel();
  if ($("explain").checked && model && model.default_explanation) query.set("explain", model.default_explanation);
  if (stream) query.set("stream", stream);
  const form = new FormData();
  form.append("image", blob, "frame.jpg");
  const reply = await fetch("/v1/analyze?" + query, { method: "POST", body: form });
  const body = await reply.json();
  if (!reply.ok) throw new Error(body.error ? body.error.message : reply.statusText);
  return body;
}

async function heatmap(base64) {
  const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  return createImageBitmap(new Blob([bytes], { type: "image/png" }));
}

// The image, then per face: its explanation map over the square that was classified, its box and label.
async function draw(image, result) {
  const maps = await Promise.all(result.faces.map((f) => (f.explanation && f.explanation.heatmap_png ? heatmap(f.explanation.heatmap_png) : null)));
  view.width = result.image.width;
  view.height = result.image.height;
  if (image) {
    ctx.drawImage(image, 0, 0, view.width, view.height);
  } else {
    ctx.fillStyle = "#555";
    ctx.fillRect(0, 0, view.width, view.height);
  }
  result.faces.forEach((face, i) => {
    const [cx, cy, side] = face.crop;
    if (maps[i]) {
      ctx.globalAlpha = 0.55;
      ctx.drawImage(maps[i], cx, cy, side, side);
      ctx.globalAlpha = 1;
      state.overlays += 1;
    }
    const [x, y, w, h] = face.box;
    ctx.lineWidth = Math.max(2, w / 60);
    ctx.strokeStyle = "#00c8ff";
    ctx.strokeRect(x, y, w, h);
    const p = (face.smoothed || face.probabilities)[face.emotion];
    const text = `${face.track ? "#" + face.track + " " : ""}${face.emotion} ${Math.round(100 * p)}%`;
    const size = Math.max(14, Math.round(w / 9));
    ctx.font = `${size}px system-ui, sans-serif`;
    const top = y > size + 8 ? y - size - 6 : y + h;
    ctx.fillStyle = "rgba(0, 0, 0, 0.65)";
    ctx.fillRect(x, top, ctx.measureText(text).width + 8, size + 6);
    ctx.fillStyle = "#fff";
    ctx.fillText(text, x + 4, top + size);
  });
  $("hint").hidden = true;
}

// Each face's running emotion mix: the mean of its probabilities over every frame it was seen in.
function updateFaces(result) {
  state.last = result;
  if (!result.stream) state.mixes.clear();
  result.faces.forEach((face, i) => {
    const key = face.track ? `#${face.track}` : `face ${i + 1}`;
    const mix = state.mixes.get(key) || { sum: result.classes.map(() => 0), frames: 0 };
    result.classes.forEach((c, k) => { mix.sum[k] += face.probabilities[c]; });
    mix.frames += 1;
    mix.label = face.emotion;
    mix.seen = result.frame;
    state.mixes.set(key, mix);
  });
  const list = $("faces");
  list.replaceChildren();
  for (const [key, mix] of state.mixes) {
    if (result.stream && result.frame - mix.seen > 30) continue; // out of view for a while
    const item = document.createElement("li");
    item.dataset.face = key;
    item.dataset.label = mix.label;
    const shares = mix.sum.map((s) => s / mix.frames);
    const order = shares.map((s, k) => [s, k]).sort((a, b) => b[0] - a[0]);
    const title = document.createElement("div");
    title.textContent = `${key}: ${mix.label} now, ${mix.frames} frame${mix.frames > 1 ? "s" : ""} seen`;
    const bar = document.createElement("div");
    bar.className = "mix";
    shares.forEach((s, k) => {
      const part = document.createElement("span");
      part.style.width = `${100 * s}%`;
      part.style.background = COLOURS[k % COLOURS.length];
      part.title = `${result.classes[k]} ${Math.round(100 * s)}%`;
      bar.append(part);
    });
    const legend = document.createElement("div");
    legend.className = "legend";
    legend.textContent = "mix: " + order.slice(0, 3).map(([s, k]) => `${result.classes[k]} ${Math.round(100 * s)}%`).join(", ");
    item.append(title, bar, legend);
    list.append(item);
  }
}

function countFrame() {
  const now = performance.now();
  state.frames += 1;
  state.times.push(now);
  while (state.times.length && now - state.times[0] > 3000) state.times.shift();
  if (state.times.length > 1) {
    const fps = (1000 * (state.times.length - 1)) / (now - state.times[0]);
    $("fps").textContent = `${fps.toFixed(1)} frames/s analysed`;
    $("fps").dataset.fps = fps.toFixed(2);
  }
}

function newStream() { return "page-" + Math.random().toString(36).slice(2, 10); }

// Camera frames go out two at a time, so that the page grabs, encodes and draws one frame while the
// service analyses the other; each result is drawn over the very frame it was computed on.
async function runCamera() {
  let media;
  try {
    media = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
  } catch (err) {
    setStatus(`no camera: ${err.message}`);
    return;
  }
  const video = $("video");
  video.srcObject = media;
  await video.play();
  state.running = true;
  state.stream = newStream();
  state.mixes.clear();
  $("camera").disabled = true;
  $("stop").disabled = false;
  const pending = new Set();
  let drawn = -1;
  while (state.running) {
    if (pending.size >= 2) {
      await Promise.race(pending);
      continue;
    }
    const frame = await createImageBitmap(video);
    const grab = new OffscreenCanvas(frame.width, frame.height);
    grab.getContext("2d").drawImage(frame, 0, 0);
    const blob = await grab.convertToBlob({ type: "image/jpeg", quality: 0.85 });
    const job = analyze(blob, state.stream)
      .then(async (result) => {
        if (result.frame > drawn) {
          drawn = result.frame;
          await draw(frame, result);
          updateFaces(result);
        }
        countFrame();
        setStatus("");
      })
      .catch(async (err) => {
        setStatus(err.message);
        await new Promise((resolve) => setTimeout(resolve, 1000));
      })
      .finally(() => pending.delete(job));
    pending.add(job);
  }
  await Promise.allSettled(pending);
  media.getTracks().forEach((t) => t.stop());
  $("camera").disabled = false;
  $("stop").disabled = true;
}

function stopCamera() {
  state.running = false;
  if (state.stream) fetch(`/v1/streams/${state.stream}`, { method: "DELETE" });
}

async function analysePhoto(file) {
  if (state.running) stopCamera();
  try {
    const result = await analyze(file, null);
    const image = await createImageBitmap(file).catch(() => null); // a TIFF: analysed, not shown by browsers
    await draw(image, result);
    updateFaces(result);
    countFrame();
    setStatus(result.faces.length ? "" : "no face found in this photo");
  } catch (err) {
    setStatus(err.message);
  }
}

$("camera").addEventListener("click", runCamera);
$("stop").addEventListener("click", stopCamera);
$("photo").addEventListener("change", (e) => { if (e.target.files.length) analysePhoto(e.target.files[0]); });
$("model").addEventListener("change", () => { state.stream = newStream(); state.mixes.clear(); });
const stage = $("stage");
stage.addEventListener("dragover", (e) => { e.preventDefault(); stage.classList.add("dragging"); });
stage.addEventListener("dragleave", () => stage.classList.remove("dragging"));
stage.addEventListener("drop", (e) => {
  e.preventDefault();
  stage.classList.remove("dragging");
  if (e.dataTransfer.files.length) analysePhoto(e.dataTransfer.files[0]);
});
loadModels().catch((err) => setStatus(`the service did not answer: ${err.message}`));
