// The mgsrgan page: upload once (the members run once, POST /v1/jobs), then every control re-renders from the
// server's cache of the members' outputs (GET /v1/jobs/{id}/image): no network runs again.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { models: null, job: null, checkpoint: "pretrain", show: "ensemble", zoom: "fit", split: 50,
                renderToken: 0, overlayToken: 0, fileName: "image" };

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

async function errorText(response) {
  try { return (await response.json()).error || response.statusText; } catch { return response.statusText; }
}

function ensembleOf(scale, real) {  // real: the real-photo ensemble of that scale (JPEG, noise, blur)
  return state.models.ensembles.find((e) => e.scale === scale && Boolean(e.real) === real);
}
function currentScale() { return Number($("scale").value); }
function currentReal() { return !$("real-row").hidden && $("real").checked; }
function currentEnsemble() { return ensembleOf(currentScale(), currentReal()); }

async function loadModels() {
  const response = await fetch("/v1/models");
  state.models = await response.json();
  const select = $("scale");
  const scales = [...new Set(state.models.ensembles.map((e) => e.scale))];
  for (const scale of scales) select.add(new Option(`x${scale}`, scale));
  select.value = state.models.default_scale;
  describeModels();
}

function describeModels() {
  $("real-row").hidden = !ensembleOf(currentScale(), true);  // the switch only where a real-photo model is loaded
  if (!ensembleOf(currentScale(), false)) $("real").checked = true;  // a scale loaded only as real photos
  const e = currentEnsemble();
  const gan = e.gan ? ` + ${e.gan.members} GAN` : "";
  $("model-info").textContent = `x${e.scale} · ${e.pretrain.members} pixel-loss${gan} members · ${e.source}`;
  $("checkpoint").querySelector('[data-value="gan"]').disabled = !e.gan;
  fillStrategies();
  fillMembers();
}

function strategiesFor(side) {  // a strategy needs the scores it weighs by
  return state.models.strategies.filter((s) => {
    if (s === "weighted" || s === "best") return Boolean(side.val_psnr_db);
    if (s === "perceptual") return Boolean(side.val_stlpips_alex);
    if (s === "texture") return state.checkpoint === "gan" && Boolean(side.val_stlpips_alex);  // needs P too
    return true;
  });
}

function fillStrategies() {
  const side = currentEnsemble()[state.checkpoint];
  const select = $("strategy");
  select.replaceChildren();
  for (const s of strategiesFor(side)) select.add(new Option(s, s));
  // what inference.py picks: the texture-preserving mean for scored GAN members, else perceptual or mean
  select.value = side.val_stlpips_alex ? (state.checkpoint === "gan" ? "texture" : "perceptual") : "mean";
  const blend = state.checkpoint === "pretrain" && currentEnsemble().gan;
  $("alpha").disabled = !blend;
  $("adaptive").disabled = !blend;
  $("guided").disabled = !blend;
}

function fillMembers() {
  const e = currentEnsemble();
  const box = $("members");
  box.replaceChildren();
  const add = (value, label, title) => {
    const b = document.createElement("button");
    b.dataset.value = value; b.textContent = label; b.title = title;
    b.classList.toggle("on", value === state.show);
    b.onclick = () => { state.show = value; fillMembers(); render(); };
    box.append(b);
  };
  add("ensemble", "Ensemble", "the members combined by the strategy (and the alpha knob)");
  for (let k = 0; k < e.pretrain.members; k++) add(`pretrain:${k}`, `P${k}`, `pixel-loss member ${k} alone`);
  for (let k = 0; e.gan && k < e.gan.members; k++) add(`gan:${k}`, `G${k}`, `GAN member ${k} alone`);
}

function viewParams(kind) {
  const p = new URLSearchParams({ kind });
  if (kind === "member") {
    const [checkpoint, member] = state.show.split(":");
    p.set("checkpoint", checkpoint); p.set("member", member);
    return p;
  }
  p.set("checkpoint", state.checkpoint);
  p.set("strategy", $("strategy").value);
  if (state.checkpoint === "pretrain" && !$("alpha").disabled) {
    const alpha = Number($("alpha").value), adaptive = Number($("adaptive").value);
    const guided = Number($("guided").value);
    p.set("alpha", alpha);
    if (alpha > 0 && adaptive > 0) p.set("adaptive", adaptive);
    if (alpha > 0 && guided > 0) p.set("guided", guided);
  }
  return p;
}

function imageUrl(params) { return `/v1/jobs/${state.job.id}/image?${params}`; }

async function drawInto(canvas, url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(await errorText(response));
  const bitmap = await createImageBitmap(await response.blob());
  canvas.width = bitmap.width; canvas.height = bitmap.height;
  canvas.getContext("2d").drawImage(bitmap, 0, 0);
  return bitmap;
}

async function render() {
  if (!state.job || state.job.status !== "done") return;
  const token = ++state.renderToken;
  const params = viewParams(state.show === "ensemble" ? "output" : "member");
  const url = imageUrl(params);
  document.body.dataset.state = "rendering";
  try {
    const response = await fetch(url);
    if (!response.ok) throw new Error(await errorText(response));
    const bitmap = await createImageBitmap(await response.blob());
    if (token !== state.renderToken) return;  // a newer render started: drop this one
    const canvas = $("after");
    canvas.width = bitmap.width; canvas.height = bitmap.height;
    canvas.getContext("2d").drawImage(bitmap, 0, 0);
    $("after-tag").textContent = state.show === "ensemble" ? (state.checkpoint === "gan" ? "GAN ensemble" : "ensemble") : state.show.replace("pretrain:", "pixel-loss member ").replace("gan:", "GAN member ");
    const download = $("download");
    params.set("format", "png");
    download.href = imageUrl(params);
    download.download = `${state.fileName}_x${state.job.scale}.png`;
    download.classList.remove("disabled");
    showError("");
    await renderOverlay();
    if (token === state.renderToken) document.body.dataset.state = "ready";
  } catch (err) {
    showError(err.message);
    document.body.dataset.state = "error";
  }
}

async function renderOverlay() {
  const canvas = $("overlay");
  canvas.style.opacity = $("overlay-opacity").value;
  canvas.hidden = !$("uncertainty").checked;
  if (canvas.hidden || !state.job || state.job.status !== "done") return;
  const token = ++state.overlayToken;
  const params = viewParams("uncertainty");
  if (state.show !== "ensemble") { params.set("kind", "uncertainty"); params.delete("member"); }
  const response = await fetch(imageUrl(params));
  if (!response.ok) { showError(await errorText(response)); return; }
  const bitmap = await createImageBitmap(await response.blob());
  if (token !== state.overlayToken) return;
  canvas.width = bitmap.width; canvas.height = bitmap.height;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(bitmap, 0, 0);
  // Where the members agree the map is viridis' dark end: make it transparent, so the overlay marks only the
  // disagreement (viridis' green channel rises monotonically, 1 -> 231, with the std)
  const pixels = ctx.getImageData(0, 0, canvas.width, canvas.height);
  const d = pixels.data;
  for (let i = 0; i < d.length; i += 4) d[i + 3] = Math.min(255, Math.max(0, (d[i + 1] - 1) * 255 / 230));
  ctx.putImageData(pixels, 0, 0);
}

function layout() {
  const wrap = $("wrap"), after = $("after");
  if (!state.job) return;
  const [width, height] = state.job.output_size;
  const stage = $("stage");
  const dpr = window.devicePixelRatio || 1;
  // 100 % = one image pixel per device pixel (pixel-exact); fit = the whole image in view, never enlarged
  const zoom = state.zoom === "fit"
    ? Math.min(1, (stage.clientWidth - 24) * dpr / width, (stage.clientHeight - 24) * dpr / height)
    : Number(state.zoom);
  wrap.style.width = `${width * zoom / dpr}px`;
  wrap.style.height = `${height * zoom / dpr}px`;
  wrap.style.marginTop = `${Math.max(12, (stage.clientHeight - height * zoom / dpr) / 2)}px`;
  wrap.classList.toggle("pixelated", zoom >= 1);
  after.style.clipPath = `inset(0 0 0 ${state.split}%)`;
  $("divider").style.left = `calc(${state.split}% - 1px)`;
  $("size-info").textContent = `${state.job.input_size.join(" x ")} -> ${width} x ${height} px · ${Math.round(zoom * 100)} %`;
}

function setProgress(job) {
  const fill = $("progress-fill"), text = $("progress-text");
  $("progress").hidden = false;
  const fraction = job.tiles_total ? job.tiles_done / job.tiles_total : 0;
  fill.style.width = `${job.status === "done" ? 100 : Math.round(fraction * 100)}%`;
  text.textContent = job.status === "running" || (job.status === "queued" && job.tiles_total)
    ? `tiles ${job.tiles_done} / ${job.tiles_total}` : job.status;
}

async function upload(file) {
  showError("");
  state.fileName = file.name.replace(/\.[^.]+$/, "") || "image";
  const form = new FormData();
  form.append("image", file);
  form.append("scale", currentScale());
  form.append("self_ensemble", $("self-ensemble").checked);
  form.append("real", currentReal());
  document.body.dataset.state = "uploading";
  const response = await fetch("/v1/jobs", { method: "POST", body: form });
  if (!response.ok) {
    showError(await errorText(response));
    document.body.dataset.state = "error";
    return;
  }
  let job = await response.json();
  state.job = job;
  $("placeholder").hidden = true;
  $("wrap").hidden = false;
  layout();
  await drawInto($("before"), imageUrl(new URLSearchParams({ kind: "bicubic" })));
  while (job.status === "queued" || job.status === "running") {
    setProgress(job);
    await new Promise((resolve) => setTimeout(resolve, 250));
    const poll = await fetch(`/v1/jobs/${job.id}`);
    if (!poll.ok) { showError(await errorText(poll)); document.body.dataset.state = "error"; return; }
    job = await poll.json();
    if (state.job.id !== job.id) return;  // another upload replaced this one
    state.job = job;
  }
  setProgress(job);
  if (job.status === "failed") { showError(job.error); document.body.dataset.state = "error"; return; }
  await render();
}

let renderTimer = null;
function renderSoon() { clearTimeout(renderTimer); renderTimer = setTimeout(render, 120); }

function bind() {
  const drop = $("drop");
  $("file").onchange = (e) => e.target.files[0] && upload(e.target.files[0]);
  drop.ondragover = (e) => { e.preventDefault(); drop.classList.add("over"); };
  drop.ondragleave = () => drop.classList.remove("over");
  drop.ondrop = (e) => { e.preventDefault(); drop.classList.remove("over"); e.dataTransfer.files[0] && upload(e.dataTransfer.files[0]); };
  $("scale").onchange = () => { state.show = "ensemble"; describeModels(); };
  $("real").onchange = () => { state.show = "ensemble"; describeModels(); };
  for (const b of $("checkpoint").querySelectorAll("button")) {
    b.onclick = () => {
      state.checkpoint = b.dataset.value;
      for (const o of $("checkpoint").querySelectorAll("button")) o.classList.toggle("on", o === b);
      fillStrategies(); render();
    };
  }
  $("strategy").onchange = render;
  $("alpha").oninput = () => { $("alpha-value").textContent = Number($("alpha").value).toFixed(2); renderSoon(); };
  // one per-pixel fusion at a time (the server refuses both): moving one slider turns the other off
  const fusion = (id, other, shown) => () => {
    const t = Number($(id).value);
    $(`${id}-value`).textContent = t ? shown(t) : "off";
    if (t) { $(other).value = 0; $(`${other}-value`).textContent = "off"; }
    renderSoon();
  };
  $("adaptive").oninput = fusion("adaptive", "guided", (t) => `c0 ${t.toFixed(1)}`);
  $("guided").oninput = fusion("guided", "adaptive", (t) => `${t} levels`);
  $("uncertainty").onchange = renderOverlay;
  $("overlay-opacity").oninput = () => { $("overlay").style.opacity = $("overlay-opacity").value; };
  $("split").oninput = () => { state.split = Number($("split").value); layout(); };
  const wrap = $("wrap");
  const follow = (e) => {
    const box = wrap.getBoundingClientRect();
    state.split = Math.max(0, Math.min(100, (e.clientX - box.left) / box.width * 100));
    $("split").value = state.split; layout();
  };
  wrap.onpointerdown = (e) => { wrap.setPointerCapture(e.pointerId); follow(e); };
  wrap.onpointermove = (e) => { if (wrap.hasPointerCapture(e.pointerId)) follow(e); };
  for (const b of document.querySelectorAll(".zoom button")) {
    b.onclick = () => {
      state.zoom = b.dataset.zoom;
      for (const o of document.querySelectorAll(".zoom button")) o.classList.toggle("on", o === b);
      layout();
    };
  }
  window.onresize = layout;
}

bind();
loadModels().catch((err) => showError(`cannot load models: ${err.message}`));
