// The page's whole logic: POST /encode, poll GET /jobs/{id}, then show the result from POST /decode
// (rendered at the size on screen, zoomed through its box) beside the original, with POST /compare's rivals.
"use strict";

const $ = (id) => document.getElementById(id);
const POLL_MS = 300;

const state = {original: null, bitstream: null, job: null, zoom: 1, centre: [0.5, 0.5], request: 0};

$("rate").addEventListener("change", () => { $("bpp-label").hidden = $("rate").value !== "bpp"; });
$("encode-form").addEventListener("submit", (event) => { event.preventDefault(); encode().catch(showError); });
$("split").addEventListener("input", showSplit);
$("zoom").addEventListener("change", () => { state.zoom = Number($("zoom").value); render().catch(showError); });
$("viewer").addEventListener("click", (event) => {
  if (state.zoom === 1) return;
  const rect = $("viewer").getBoundingClientRect();
  const box = viewBox();
  state.centre = [(box[0] + (event.clientX - rect.left) / rect.width * (box[2] - box[0])) / state.job.width,
                  (box[1] + (event.clientY - rect.top) / rect.height * (box[3] - box[1])) / state.job.height];
  render().catch(showError);
});
window.addEventListener("resize", () => { if (state.bitstream) render().catch(showError); });

async function problem(response) {
  try {
    const body = await response.json();
    return new Error(body.message || `${response.status} ${response.statusText}`);
  } catch (_) {
    return new Error(`${response.status} ${response.statusText}`);
  }
}

function showError(error) {
  $("error").textContent = error.message;
  $("error").hidden = false;
  $("encode").disabled = false;
}

async function encode() {
  const file = $("file").files[0];
  if (!file) throw new Error("choose an image first");
  $("error").hidden = true;
  $("result").hidden = true;
  delete $("result").dataset.ready;
  $("encode").disabled = true;
  const form = new FormData();
  form.append("file", file);
  const rate = $("rate").value;
  if (rate === "bpp") form.append("bpp", $("bpp").value);
  else if (rate.startsWith("bpp:")) form.append("bpp", rate.slice("bpp:".length));
  else form.append("preset", rate.slice("preset:".length));
  if ($("iterations").value) form.append("iterations", $("iterations").value);

  const submitted = await fetch("/encode", {method: "POST", body: form});
  if (!submitted.ok) throw await problem(submitted);
  let job = await submitted.json();
  $("progress-panel").hidden = false;
  while (!["succeeded", "failed", "canceled"].includes(job.status)) {
    showProgress(job);
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    const polled = await fetch(`/jobs/${job.id}`);
    if (!polled.ok) throw await problem(polled);
    job = await polled.json();
  }
  showProgress(job);
  if (job.status !== "succeeded") throw new Error(`the encode ${job.status}: ${job.error ? job.error.message : ""}`);

  const result = await fetch(job.result.url);
  if (!result.ok) throw await problem(result);
  state.bitstream = await result.blob();
  state.job = job;
  state.original = await createImageBitmap(file);
  state.zoom = 1;
  state.centre = [0.5, 0.5];
  $("zoom").value = "1";
  showStats(job);
  $("result").hidden = false;
  $("encode").disabled = false;
  $("result").dataset.job = job.id;
  await Promise.all([render(), compare(file, job.result.bytes)]);
  $("result").dataset.ready = "true";  // everything shown: what the browser test waits for
}

function showProgress(job) {
  const done = job.progress.total ? `iteration ${job.progress.iteration} of ${job.progress.total}` : "";
  const psnr = job.psnr === null ? "" : `, PSNR ${job.psnr.toFixed(2)} dB`;
  $("progress").value = job.progress.fraction;
  $("status").textContent = `${job.status}${done ? ": " + done : ""}${psnr}`;
}

function showStats(job) {
  const r = job.result;
  setRow("gsic", r.bytes, r.bpp, r.psnr, `${r.n_gaussians} Gaussians, ${r.seconds.toFixed(1)} s on ${r.device}`);
  const name = ($("file").files[0].name.replace(/\.[^.]*$/, "") || "image") + ".gsi";
  $("download").href = URL.createObjectURL(state.bitstream);
  $("download").download = name;
}

function setRow(row, bytes, bpp, psnr, note) {
  $(`${row}-bytes`).textContent = `${bytes} B`;
  $(`${row}-bpp`).textContent = bpp.toFixed(4);
  $(`${row}-psnr`).textContent = `${psnr.toFixed(2)} dB`;
  $(`${row}-note`).textContent = note;
}

async function compare(file, bytes) {
  const form = new FormData();
  form.append("file", file);
  form.append("max_bytes", String(bytes));
  const response = await fetch("/compare", {method: "POST", body: form});
  if (!response.ok) {  // a refusal (too large, busy) leaves the rows empty with the reason, not the page in error
    const reason = `not compared: ${(await problem(response)).message}`;
    for (const row of ["jpeg", "webp"]) {
      ["bytes", "bpp", "psnr"].forEach((cell) => { $(`${row}-${cell}`).textContent = ""; });
      $(`${row}-note`).textContent = reason;
    }
    return;
  }
  for (const rival of (await response.json()).rivals) {
    const note = rival.fits ? `quality ${rival.quality}` : `cannot get this small (quality ${rival.quality})`;
    setRow(rival.format, rival.bytes, rival.bpp, rival.psnr, note);
  }
}

// The part of the picture on screen, in its own pixels: all of it, or 1/zoom of each side around the centre.
function viewBox() {
  const {width, height} = state.job;
  const w = width / state.zoom, h = height / state.zoom;
  const left = Math.min(Math.max(state.centre[0] * width - w / 2, 0), width - w);
  const top = Math.min(Math.max(state.centre[1] * height - h / 2, 0), height - h);
  return [left, top, left + w, top + h];
}

async function render() {
  const {width, height} = state.job;
  const viewer = $("viewer");
  viewer.style.aspectRatio = `${width} / ${height}`;  // as wide as the panel, as tall as the picture's shape
  const {width: cssWidth, height: cssHeight} = viewer.getBoundingClientRect();
  const outWidth = Math.max(1, Math.round(cssWidth * window.devicePixelRatio));
  const outHeight = Math.max(1, Math.round(cssHeight * window.devicePixelRatio));
  const box = viewBox();

  // The original: its pixels of the box, enlarged without smoothing (what "upscaled pixels" look like).
  const canvas = $("original-view");
  canvas.width = outWidth;
  canvas.height = outHeight;
  const context = canvas.getContext("2d");
  context.imageSmoothingEnabled = false;
  context.drawImage(state.original, box[0], box[1], box[2] - box[0], box[3] - box[1], 0, 0, outWidth, outHeight);

  // The .gsi: the Gaussians rendered straight at the size on screen.
  const request = ++state.request;
  const query = new URLSearchParams({box: box.map((v) => v.toFixed(3)).join(","), width: outWidth,
                                     height: outHeight});
  const response = await fetch(`/decode?${query}`, {method: "POST", body: state.bitstream,
                                                    headers: {"Content-Type": "application/octet-stream"}});
  if (!response.ok) throw await problem(response);
  const png = URL.createObjectURL(await response.blob());
  if (request !== state.request) return;  // a newer zoom or resize already asked for another render
  const image = $("decoded-view");
  await new Promise((resolve, reject) => { image.onload = resolve; image.onerror = reject; image.src = png; });
  image.dataset.box = query.get("box");
  showSplit();
}

function showSplit() {
  const share = Number($("split").value);
  $("decoded-view").style.clipPath = `inset(0 0 0 ${share}%)`;
  $("split-line").style.left = `${share}%`;
}
