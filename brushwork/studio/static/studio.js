// brushwork studio page: plain JavaScript, no libraries, nothing from the internet.
// It talks only to this server's /api (see brushwork/studio/app.py).
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  config: null,
  content: null,          // {id, name}
  styles: [],             // [{id, name}]
  jobs: new Map(),        // id -> latest snapshot
  history: new Map(),     // id -> [{step, scale, content, style, tv, total}]
  pending: new Map(),     // id -> points that came while its history was being fetched
  selected: null,         // job id shown on the stage
  shownPreview: new Map(),// id -> preview version on screen
  comparing: false,       // the photo shown over the finished painting, cut at the slider
  gallery: [],
};
const ADVANCED = ["style_weight", "content_weight", "min_size", "photo_detail"];
// How a job of another kind than a picture is shown (plans.js registers "plan"): each
// view may give status(job) and line2(job) text, decorate its gallery button, say that
// it shows a picture of its own (ownsPicture(job)) instead of the preview, and
// stage(job) is called after every render of the stage (with null when none is shown).
const KIND_VIEWS = {};
function kindView(job) { return (job && KIND_VIEWS[job.kind]) || null; }
function stageViews(job) { for (const v of Object.values(KIND_VIEWS)) if (v.stage) v.stage(job); }
const TERMINAL = new Set(["done", "failed", "cancelled", "interrupted"]);

// Options with a slider: log10 sliders for the weights, linear for the rest.
// Strength sets the ADVANCED ones; the page sends either strength or those.
const SLIDERS = {
  strength: {},
  style_weight: { log: true },
  content_weight: { log: true },
  min_size: { int: true },
  photo_detail: {},
  tv_weight: { log: true, zeroAtMin: true },
  size: { int: true },
  iterations: { int: true },
  style_scale: {},
};

// ---------------------------------------------------------------- helpers

async function api(path, options = {}) {
  const response = await fetch(path, options);
  let body = null;
  const type = response.headers.get("content-type") || "";
  if (type.includes("application/json")) body = await response.json();
  if (!response.ok) {
    let detail = body && body.detail;
    if (Array.isArray(detail)) detail = detail.map((d) => d.msg || JSON.stringify(d)).join("; ");
    throw new Error(detail || `${response.status} ${response.statusText}`);
  }
  return body;
}

function el(tag, attrs = {}, children = []) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") node.textContent = v;
    else if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

function fmtNumber(x) {
  if (x === 0) return "0";
  const a = Math.abs(x);
  if (a >= 1e4 || a < 1e-2) {
    const [m, e] = x.toExponential(1).split("e");
    return `${m.replace(/\.0$/, "")}e${Number(e)}`;
  }
  return String(Number(x.toPrecision(3)));
}

function fmtSeconds(s) {
  if (s == null || !isFinite(s)) return "";
  s = Math.round(s);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  return `${m} min ${String(s % 60).padStart(2, "0")} s`;
}

// Clips live in clips.js (loaded after this file); these are its hooks.
function clipsHook(name, ...args) {
  const fn = window.brushworkClips && window.brushworkClips[name];
  return fn ? fn(...args) : undefined;
}

function ordinal(n) {
  const s = ["th", "st", "nd", "rd"], v = n % 100;
  return n + (s[(v - 20) % 10] || s[v] || s[0]);
}

function shortId(id) { return id.slice(0, 6); }

// ---------------------------------------------------------------- the form

function sliderToValue(name, v) {
  const spec = SLIDERS[name];
  v = Number(v);
  if (spec.log) {
    if (spec.zeroAtMin && v <= Number($(name + "-range").min)) return 0;
    return Number(Math.pow(10, v).toPrecision(2));
  }
  return spec.int ? Math.round(v) : Number(v.toFixed(2));
}

function valueToSlider(name, x) {
  const spec = SLIDERS[name];
  if (spec.log) return x > 0 ? Math.log10(x) : Number($(name + "-range").min);
  return x;
}

function setOption(name, value) {
  const input = $(name);
  if (!input) return;
  if (name === "seed") { input.value = value == null ? "" : value; return; }
  if (input.tagName === "SELECT") {
    if ([...input.options].some((o) => o.value === value)) input.value = value;
    return;
  }
  input.value = SLIDERS[name] && SLIDERS[name].log ? fmtNumber(value) : value;
  input.classList.remove("invalid");
  if (SLIDERS[name]) $(name + "-range").value = valueToSlider(name, value);
}

function setupForm() {
  for (const name of Object.keys(SLIDERS)) {
    const range = $(name + "-range"), input = $(name);
    range.addEventListener("input", () => {
      const v = sliderToValue(name, range.value);
      input.value = SLIDERS[name].log ? fmtNumber(v) : v;
      input.classList.remove("invalid");
    });
    input.addEventListener("change", () => {
      const v = Number(input.value);
      const ok = input.value.trim() !== "" && isFinite(v) && v >= 0;
      input.classList.toggle("invalid", !ok);
      if (ok) range.value = valueToSlider(name, v);
    });
  }
  const advanced = $("advanced");
  advanced.addEventListener("toggle", () => {
    $("strength").closest(".row").classList.toggle("inactive", advanced.open);
  });
  $("start").addEventListener("click", startJob);
  for (const ev of ["input", "change"]) {
    document.querySelector(".controls .options").addEventListener(ev, scheduleEstimate);
  }
  advanced.addEventListener("toggle", scheduleEstimate);
  $("reset").addEventListener("click", resetForm);
}

function resetForm() {
  const d = state.config.defaults;
  for (const name of [...Object.keys(SLIDERS), "preserve_colors", "style_loss", "photoreal", "model", "seed"]) {
    setOption(name, d[name]);
  }
  $("advanced").open = false;
  scheduleEstimate();
}

// A texture (no photo): the paintings' style alone at a width and height, from noise
// (POST /api/textures); the photo's options are hidden and not sent.
function textureMode() { return $("mode-texture").getAttribute("aria-selected") === "true"; }
const PHOTO_SLIDERS = ["strength", ...ADVANCED, "size"];

// After the mode tabs changed (plans.js's setMode, which shows each section in its
// modes): what a texture changes besides, the photo's options and the button's words.
function textureModeChanged() {
  const on = textureMode();
  for (const node of document.querySelectorAll(".photo-only")) node.hidden = on;
  if (on) $("start").textContent = "Paint texture";
  else if ($("start").textContent === "Paint texture") $("start").textContent = "Paint";
  $("placeholder").querySelector("p").textContent = on
    ? "Choose a painting, a width and a height, then Paint texture."
    : "Choose a photo and a painting, then Paint.";
  scheduleEstimate();
}

function setupTexture() {
  $("mode-texture").addEventListener("click", () => setMode("texture"));
  for (const id of ["texture-width", "texture-height", "tileable"]) {
    $(id).addEventListener("change", scheduleEstimate);
    $(id).addEventListener("input", scheduleEstimate);
  }
}

function textureSide(id) {
  const input = $(id), v = Number(input.value);
  const ok = input.value.trim() !== "" && Number.isInteger(v) && v >= 16;
  input.classList.toggle("invalid", !ok);
  if (!ok) throw new Error(`${id === "texture-width" ? "Width" : "Height"}: a whole number of pixels, 16 or more`);
  return v;
}

// The request for the job the form describes: its routes (queue, estimate) and JSON body.
function jobRequest() {
  const options = readOptions();
  const styles = state.styles.map((s) => s.id);
  if (textureMode()) {
    return { route: "/api/textures", estimate: "/api/textures/estimate", body: { styles, options,
      width: textureSide("texture-width"), height: textureSide("texture-height") } };
  }
  return { route: "/api/jobs", estimate: "/api/estimate",
           body: { content: state.content.id, styles, options } };
}

function readOptions() {
  const options = {};
  const byHand = $("advanced").open;
  const texture = textureMode();
  for (const name of Object.keys(SLIDERS)) {
    if (texture && PHOTO_SLIDERS.includes(name)) continue;
    if (name === "strength" ? byHand : ADVANCED.includes(name) && !byHand) continue;
    const input = $(name);
    const v = Number(input.value);
    if (input.value.trim() === "" || !isFinite(v) || v < 0) {
      input.classList.add("invalid");
      throw new Error(`${input.closest(".row").querySelector("label").textContent.trim()}: not a number`);
    }
    options[name] = SLIDERS[name].int ? Math.round(v) : v;
  }
  if (texture) options.tileable = $("tileable").checked;
  else {
    options.preserve_colors = $("preserve_colors").value;
    options.photoreal = $("photoreal").value;
  }
  options.style_loss = $("style_loss").value;
  options.model = $("model").value;
  const seed = $("seed").value.trim();
  if (seed !== "") options.seed = Math.round(Number(seed));
  return options;
}

// ---------------------------------------------------------------- uploads

function setupDrop(kind) {
  const drop = $(kind + "-drop"), input = $(kind + "-input");
  input.addEventListener("change", () => { uploadFiles(kind, [...input.files]); input.value = ""; });
  for (const ev of ["dragenter", "dragover"]) {
    drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.add("over"); });
  }
  for (const ev of ["dragleave", "drop"]) {
    drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.remove("over"); });
  }
  drop.addEventListener("drop", (e) => uploadFiles(kind, [...e.dataTransfer.files]));
}

async function uploadFiles(kind, files) {
  if (!files.length) return;
  const errorBox = $(kind + "-error");
  errorBox.textContent = "";
  if (kind === "content") files = files.slice(0, 1);
  for (const file of files) {
    const form = new FormData();
    form.append("file", file);
    try {
      const up = await api("/api/upload", { method: "POST", body: form });
      const item = { id: up.id, name: up.name };
      if (kind === "content") state.content = item;
      else state.styles.push(item);
    } catch (err) {
      errorBox.textContent = `${file.name}: ${err.message}`;
    }
  }
  renderUploads();
}

function thumbFor(kind, item, index) {
  const remove = el("button", {
    class: "remove", type: "button", title: "remove", "aria-label": `remove ${item.name}`,
    onclick: () => {
      if (kind === "content") state.content = null; else state.styles.splice(index, 1);
      renderUploads();
    },
  }, ["×"]);
  return el("div", { class: "thumb", "data-upload": item.id }, [
    el("img", { src: `/api/uploads/${item.id}/thumb`, alt: item.name }),
    el("span", { class: "name", text: item.name, title: item.name }),
    remove,
  ]);
}

function renderUploads() {
  $("content-thumbs").replaceChildren(...(state.content ? [thumbFor("content", state.content, 0)] : []));
  $("style-thumbs").replaceChildren(...state.styles.map((s, i) => thumbFor("style", s, i)));
  loadRegionPhoto();
  renderRegions();
  scheduleEstimate();
}

// The run's predicted time and peak memory beside the Paint button (POST /api/estimate),
// asked again a moment after the pictures or the options change; a late reply to an
// older question is dropped.
let estimateTimer = null, estimateAsked = 0;

function scheduleEstimate() {
  clearTimeout(estimateTimer);
  estimateTimer = setTimeout(refreshEstimate, 400);
}

async function refreshEstimate() {
  const box = $("estimate");
  const asked = ++estimateAsked;
  if (clipsHook("active")) return clipsHook("estimate", box, asked, () => asked === estimateAsked);
  if ((!state.content && !textureMode()) || !state.styles.length) { box.textContent = ""; return; }
  let request;
  try { request = jobRequest(); } catch (err) { box.textContent = ""; return; }
  try {
    const reply = await api(request.estimate, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(request.body),
    });
    if (asked === estimateAsked) { box.textContent = reply.text; box.classList.remove("error"); }
  } catch (err) {
    if (asked === estimateAsked) { box.textContent = err.message; box.classList.add("error"); }
  }
}

// ---------------------------------------------------------------- regions

// Each painting's region over the photo is a layer whose alpha is that painting's
// share (white = all of it); the brush paints one layer and wipes the others, the
// eraser ("keep the photo") wipes them all.  The layers are the size of the photo's
// thumbnail; each is sent as a greyscale mask upload (brushwork --style-masks).
const REGION_COLORS = ["#e4572e", "#2e86ab", "#f3a712", "#6a994e", "#a23b72", "#3d5a80",
                       "#c44536", "#8d6a9f"];
const KEEP_PHOTO = -1;
const regions = {
  photoId: null, photo: null, width: 0, height: 0,
  layers: [],          // one canvas per painting, in the order of state.styles
  byStyle: new Map(),  // painting's upload id -> its layer
  stylesKey: null,     // the paintings the layers were made for
  tool: 0,             // the painting the brush paints, or KEEP_PHOTO
  undo: [],            // snapshots of every layer, before each stroke
  last: null,          // the stroke's previous point
  sent: null,          // {key, ids}: the masks as last uploaded
  loading: Promise.resolve(),  // the photo's thumbnail, until it has loaded
  version: 0,          // bumped by every change of the layers
};
const UNDO_DEPTH = 30;

function setupRegions() {
  $("regions-on").addEventListener("change", () => {
    $("regions").hidden = !$("regions-on").checked;
    renderRegions();
  });
  const canvas = $("region-canvas");
  canvas.addEventListener("pointerdown", (e) => {
    if (!regions.layers.length) return;
    canvas.setPointerCapture(e.pointerId);
    pushUndo();
    regions.last = canvasPoint(e);
    dab(regions.last);
    drawRegions();
  });
  canvas.addEventListener("pointermove", (e) => {
    if (!regions.last) return;
    const p = canvasPoint(e);
    const r = brushRadius();
    const dist = Math.hypot(p.x - regions.last.x, p.y - regions.last.y);
    const n = Math.max(1, Math.ceil(dist / Math.max(1, r / 4)));
    for (let i = 1; i <= n; i++) {
      dab({ x: regions.last.x + (p.x - regions.last.x) * i / n,
            y: regions.last.y + (p.y - regions.last.y) * i / n });
    }
    regions.last = p;
    drawRegions();
  });
  for (const ev of ["pointerup", "pointercancel"]) {
    canvas.addEventListener(ev, () => { regions.last = null; });
  }
  $("region-undo").addEventListener("click", () => {
    const snap = regions.undo.pop();
    if (snap) {
      snap.forEach((data, k) => { if (regions.layers[k]) regions.layers[k].getContext("2d").putImageData(data, 0, 0); });
      regions.version++;
    }
    drawRegions();
  });
  $("region-clear").addEventListener("click", () => {
    pushUndo();
    for (const layer of regions.layers) layer.getContext("2d").clearRect(0, 0, layer.width, layer.height);
    regions.version++;
    drawRegions();
  });
}

function canvasPoint(e) {
  const canvas = $("region-canvas"), box = canvas.getBoundingClientRect();
  return { x: (e.clientX - box.left) * canvas.width / box.width,
           y: (e.clientY - box.top) * canvas.height / box.height };
}

// The brush's radius in layer pixels: the slider is in pixels of the canvas on screen.
function brushRadius() {
  const canvas = $("region-canvas");
  const scale = canvas.width / (canvas.getBoundingClientRect().width || canvas.width);
  return Number($("brush-size").value) / 2 * scale;
}

function dab(p) {
  const r = brushRadius(), soft = Number($("brush-softness").value);
  regions.layers.forEach((layer, k) => {
    const g = layer.getContext("2d");
    const grad = g.createRadialGradient(p.x, p.y, r * (1 - soft), p.x, p.y, r);
    grad.addColorStop(0, "rgba(255,255,255,1)");
    grad.addColorStop(1, "rgba(255,255,255,0)");
    g.globalCompositeOperation = k === regions.tool ? "source-over" : "destination-out";
    g.fillStyle = grad;
    g.beginPath(); g.arc(p.x, p.y, r, 0, 2 * Math.PI); g.fill();
    g.globalCompositeOperation = "source-over";
  });
  regions.version++;
}

function pushUndo() {
  regions.undo.push(regions.layers.map((l) => l.getContext("2d").getImageData(0, 0, l.width, l.height)));
  if (regions.undo.length > UNDO_DEPTH) regions.undo.shift();
}

function newLayer() {
  const c = document.createElement("canvas");
  c.width = regions.width; c.height = regions.height;
  return c;
}

// The photo under the brush: its thumbnail, loaded when the photo changes.
function loadRegionPhoto() {
  const id = state.content ? state.content.id : null;
  if (id === regions.photoId) return regions.loading;
  regions.photoId = id;
  regions.photo = null; regions.layers = []; regions.undo = []; regions.version++;
  regions.byStyle = new Map(); regions.stylesKey = null;
  if (!id) { renderRegions(); regions.loading = Promise.resolve(); return regions.loading; }
  regions.loading = new Promise((resolve) => {
    const img = new Image();
    img.onload = () => {
      if (regions.photoId !== id) { resolve(); return; }
      regions.photo = img;
      regions.width = img.naturalWidth; regions.height = img.naturalHeight;
      renderRegions();
      resolve();
    };
    img.onerror = () => resolve();
    img.src = `/api/uploads/${id}/thumb`;
  });
  return regions.loading;
}

// One layer per painting, following its painting when others are added or removed.
function syncLayers() {
  if (!regions.photo) { regions.layers = []; regions.byStyle = new Map(); regions.stylesKey = null; return; }
  const ids = state.styles.map((s) => s.id);
  if (ids.join(",") === regions.stylesKey) return;
  regions.stylesKey = ids.join(",");
  const kept = new Map();
  regions.layers = ids.map((id) => {
    const layer = regions.byStyle.get(id) || newLayer();
    kept.set(id, layer);
    return layer;
  });
  regions.byStyle = kept;
  regions.undo = [];  // snapshots are by position
  regions.version++;
  if (regions.tool >= ids.length) regions.tool = ids.length ? 0 : KEEP_PHOTO;
}

function renderRegions() {
  syncLayers();
  const tools = state.styles.map((s, k) => ({ k, label: s.name, color: REGION_COLORS[k % REGION_COLORS.length] }));
  tools.push({ k: KEEP_PHOTO, label: "keep the photo", color: "#ffffff" });
  $("region-tools").replaceChildren(...tools.map((t) => el("button", {
    type: "button", role: "radio", "aria-checked": String(t.k === regions.tool),
    class: t.k === regions.tool ? "selected" : "", "data-tool": String(t.k), title: t.label,
    onclick: () => { regions.tool = t.k; renderRegions(); },
  }, [el("span", { class: "chip" }), el("span", { class: "label", text: t.label })])));
  $("region-tools").querySelectorAll(".chip").forEach((chip, i) => { chip.style.background = tools[i].color; });
  drawRegions();
}

function drawRegions() {
  const canvas = $("region-canvas");
  $("region-undo").disabled = !regions.undo.length;
  if (!regions.photo) { canvas.width = 0; canvas.height = 0; return; }
  if (canvas.width !== regions.width) canvas.width = regions.width;
  if (canvas.height !== regions.height) canvas.height = regions.height;
  const g = canvas.getContext("2d");
  g.globalAlpha = 1;
  g.drawImage(regions.photo, 0, 0, regions.width, regions.height);
  const tint = newLayer(), t = tint.getContext("2d");
  regions.layers.forEach((layer, k) => {
    t.globalCompositeOperation = "source-over";
    t.clearRect(0, 0, tint.width, tint.height);
    t.fillStyle = REGION_COLORS[k % REGION_COLORS.length];
    t.fillRect(0, 0, tint.width, tint.height);
    t.globalCompositeOperation = "destination-in";
    t.drawImage(layer, 0, 0);
    g.globalAlpha = 0.55;
    g.drawImage(tint, 0, 0);
  });
  g.globalAlpha = 1;
  canvas.dataset.version = String(regions.version);
}

function regionsWanted() { return $("regions-on").checked && state.styles.length > 0; }

function layerPainted(layer) {
  const d = layer.getContext("2d").getImageData(0, 0, layer.width, layer.height).data;
  for (let i = 3; i < d.length; i += 4) if (d[i] > 0) return true;
  return false;
}

// Each layer as a greyscale PNG (its alpha over black), uploaded; the same ids again
// while nothing changed.
async function uploadMasks() {
  if (!regions.photo || regions.layers.length !== state.styles.length) {
    throw new Error("Regions: the photo is still loading.");
  }
  regions.layers.forEach((layer, k) => {
    if (!layerPainted(layer)) {
      throw new Error(`Regions: paint where ${state.styles[k].name} goes, or turn regions off.`);
    }
  });
  const key = `${regions.photoId}:${regions.version}:${regions.layers.length}`;
  if (regions.sent && regions.sent.key === key) return regions.sent.ids;
  const ids = [];
  for (const [k, layer] of regions.layers.entries()) {
    const out = newLayer(), g = out.getContext("2d");
    g.fillStyle = "#000"; g.fillRect(0, 0, out.width, out.height);
    g.drawImage(layer, 0, 0);
    const blob = await new Promise((resolve) => out.toBlob(resolve, "image/png"));
    const form = new FormData();
    form.append("file", blob, `region-${k + 1}.png`);
    const up = await api("/api/upload", { method: "POST", body: form });
    ids.push(up.id);
  }
  regions.sent = { key, ids };
  return ids;
}

// A stored job's masks back into the layers (their thumbnails: luminance -> alpha).
async function loadMasks(ids) {
  await loadRegionPhoto();
  syncLayers();
  regions.undo = [];
  await Promise.all(ids.map((id, k) => new Promise((resolve) => {
    const layer = regions.layers[k];
    if (!layer) { resolve(); return; }
    const img = new Image();
    img.onload = () => {
      const g = layer.getContext("2d");
      g.clearRect(0, 0, layer.width, layer.height);
      g.drawImage(img, 0, 0, layer.width, layer.height);
      const data = g.getImageData(0, 0, layer.width, layer.height), d = data.data;
      for (let i = 0; i < d.length; i += 4) {
        const grey = (d[i] + d[i + 1] + d[i + 2]) / 3;
        d[i] = d[i + 1] = d[i + 2] = 255; d[i + 3] = Math.round(grey);
      }
      g.putImageData(data, 0, 0);
      resolve();
    };
    img.onerror = () => resolve();
    img.src = `/api/uploads/${id}/thumb`;
  })));
  regions.version++;
  regions.sent = { key: `${regions.photoId}:${regions.version}:${regions.layers.length}`, ids };
  $("regions-on").checked = true;
  $("regions").hidden = false;
  renderRegions();
}

// ---------------------------------------------------------------- jobs

async function startJob() {
  const errorBox = $("form-error");
  errorBox.textContent = "";
  if (clipsHook("active")) return clipsHook("start", errorBox);
  if (!state.content && !textureMode()) { errorBox.textContent = "Choose a photo first."; return; }
  if (!state.styles.length) { errorBox.textContent = "Choose at least one painting."; return; }
  let request;
  try { request = jobRequest(); } catch (err) { errorBox.textContent = err.message; return; }
  const button = $("start");
  button.disabled = true;
  try {
    if (!textureMode() && regionsWanted()) request.body.masks = await uploadMasks();
    const job = await api(request.route, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(request.body),
    });
    state.history.set(job.id, []);
    updateJob(job);
    select(job.id, false);
  } catch (err) {
    errorBox.textContent = err.message;
  } finally {
    button.disabled = false;
  }
}

// A job only moves forward: queued -> running -> an end state, and its step only grows.
// Replies and events can arrive out of order (the reply to POST /api/jobs, made while
// the job was queued, may land after the event saying it runs), so an older snapshot
// must not overwrite a newer one.
const STATE_RANK = { queued: 0, running: 1 };

function isOlder(ev, old) {
  if (!old || !ev.state || !old.state) return false;
  const rank = (s) => (s in STATE_RANK ? STATE_RANK[s] : 2);
  const a = rank(ev.state), b = rank(old.state);
  return a < b || (a === b && a === 1 && (ev.step || 0) < (old.step || 0));
}

function mergeJob(ev) {
  const old = state.jobs.get(ev.id);
  // Keep a richer snapshot's fields (e.g. settings) when an event lacks them; an older
  // snapshot only fills in what is missing.
  const merged = isOlder(ev, old) ? Object.assign({}, ev, old) : Object.assign({}, old || {}, ev);
  state.jobs.set(ev.id, merged);
  return old;
}

function updateJob(ev) {
  const old = mergeJob(ev);
  if (ev.points && ev.points.length) {
    const hist = state.history.get(ev.id);
    if (hist) {
      const last = hist.length ? hist[hist.length - 1].step : 0;
      for (const p of ev.points) if (p.step > last) hist.push(p);
    }
    // Its history is being fetched (select): the reply may be older than these points,
    // so they are kept to be added after it.
    const waiting = state.pending.get(ev.id);
    if (waiting) waiting.push(...ev.points.slice(-5000));
  }
  renderQueue();
  if (ev.id === state.selected) renderStage();
  if (ev.state === "done" && (!old || old.state !== "done")) loadGallery();
  // A finished run sharpens the estimate (and frees the machine to be measured).
  if (TERMINAL.has(ev.state) && (!old || old.state !== ev.state)) scheduleEstimate();
}

async function select(id, fetchDetail = true) {
  state.selected = id;
  if (fetchDetail) {
    try {
      state.pending.set(id, []);
      const job = await api(`/api/jobs/${id}`);
      const hist = job.history || [];
      let last = hist.length ? hist[hist.length - 1].step : 0;
      for (const p of state.pending.get(id) || []) {
        if (p.step > last) { hist.push(p); last = p.step; }
      }
      state.pending.delete(id);
      state.history.set(id, hist);
      delete job.history;
      mergeJob(job);
    } catch (err) {
      state.pending.delete(id);
      $("job-error").textContent = err.message;
      return;
    }
  }
  renderQueue();
  renderGallery();
  renderStage();
}

function cancelJob() {
  const id = state.selected;
  api(`/api/jobs/${id}/cancel`, { method: "POST" }).then(updateJob)
    .catch((err) => { $("job-error").textContent = err.message; });
}

async function deleteJob() {
  const id = state.selected;
  if (!confirm("Delete this picture from the gallery?")) return;
  try {
    await api(`/api/jobs/${id}`, { method: "DELETE" });
    state.jobs.delete(id);
    state.selected = null;
    renderStage(); renderQueue(); loadGallery();
  } catch (err) { $("job-error").textContent = err.message; }
}

async function reopen() {
  const job = state.jobs.get(state.selected);
  if (!job) return;
  resetForm();
  for (const [k, v] of Object.entries(job.options || {})) setOption(k, v);
  // A job painted with raw weights reopens with them; one painted by strength, with it.
  $("advanced").open = !("strength" in (job.options || {})) &&
    ADVANCED.some((k) => k in (job.options || {}));
  const note = [];
  const texture = job.kind === "texture";
  if (texture) setMode("texture");
  else if (textureMode()) setMode("picture");
  if (texture) {
    $("texture-width").value = job.options.width;
    $("texture-height").value = job.options.height;
    $("tileable").checked = !!job.options.tileable;
  }
  const fetchUpload = async (id) => {
    try { const up = await api(`/api/uploads/${id}`); return { id: up.id, name: up.name }; }
    catch (err) { note.push("an image of this job is no longer stored"); return null; }
  };
  if (!texture) state.content = await fetchUpload(job.content);
  state.styles = (await Promise.all(job.styles.map(fetchUpload))).filter(Boolean);
  if (job.masks && job.masks.length === state.styles.length && state.content) {
    renderUploads();
    await loadMasks(job.masks);
  } else {
    $("regions-on").checked = false;
    $("regions").hidden = true;
  }
  const model = job.options && job.options.model;
  if (model && ![...$("model").options].some((o) => o.value === model)) {
    note.push(`network ${model} is not offered by this studio now`);
  }
  renderUploads();
  $("form-error").textContent = note.join("; ");
  $("start").focus();
}

// ---------------------------------------------------------------- rendering

function statusText(job) {
  const view = kindView(job);
  if (view && view.status) return view.status(job);
  const parts = [];
  if (job.state === "queued") {
    parts.push(job.place ? `waiting, ${ordinal(job.place)} in the queue` : "waiting");
  } else if (job.state === "running") {
    if (!job.step) parts.push("loading the network…");
    else {
      if (job.kind === "clip" && job.detail && job.detail.frames) {
        parts.push(`frame ${job.detail.frame || 1} of ${job.detail.frames}`);
      }
      if (job.scales > 1) parts.push(`scale ${job.scale + 1}/${job.scales}`);
      if (job.size) parts.push(`${job.size[0]}×${job.size[1]}`);
      parts.push(`step ${job.step}/${job.total}`);
      parts.push(fmtSeconds(job.elapsed));
      if (job.eta != null) parts.push(`about ${fmtSeconds(job.eta)} left`);
    }
  } else if (job.state === "done") {
    if (job.kind === "clip" && job.detail) parts.push(`${job.detail.frames_done} frames`);
    if (job.size) parts.push(`${job.size[0]}×${job.size[1]}`);
    parts.push(`${job.total} steps in ${fmtSeconds(job.elapsed)}`);
    if (job.losses && job.losses.total != null) parts.push(`loss ${fmtNumber(job.losses.total)}`);
  } else if (job.step) {
    parts.push(`stopped at step ${job.step}/${job.total}`);
  }
  return parts.join(" · ");
}

function renderStage() {
  const job = state.jobs.get(state.selected);
  const img = $("preview");
  $("placeholder").hidden = !!job && (job.preview > 0 || job.result);
  if (!job) {
    img.hidden = true;
    $("job-state").hidden = true;
    $("status-text").textContent = "";
    $("progress-fill").style.width = "0";
    $("job-error").textContent = "";
    for (const id of ["cancel", "download", "download-settings", "reopen", "delete"]) $(id).hidden = true;
    renderCompare(null);
    clipsHook("stage", null, false);
    drawChart([]);
    stageViews(null);
    return;
  }
  const badge = $("job-state");
  badge.hidden = false;
  badge.textContent = job.state;
  badge.className = `badge ${job.state}`;
  $("status-text").textContent = statusText(job);
  const progress = job.state === "done" ? 1 : (job.progress || 0);
  $("progress-fill").style.width = `${(100 * progress).toFixed(1)}%`;
  $("job-error").textContent = job.error || "";
  $("cancel").hidden = TERMINAL.has(job.state);
  const done = job.state === "done" && job.result;
  $("download").hidden = !done;
  $("download-settings").hidden = !done;
  $("delete").hidden = !TERMINAL.has(job.state);
  $("reopen").hidden = false;
  if (done) {
    $("download").href = `/api/jobs/${job.id}/result`;
    $("download-settings").href = `/api/jobs/${job.id}/settings`;
  }
  if (!$("placeholder").hidden) {
    $("placeholder").querySelector("p").textContent =
      job.state === "queued" ? "Waiting for its turn…" :
      job.state === "running" ? "Starting…" : "No picture for this job.";
    $("placeholder").querySelector(".small").textContent = "";
  }
  // The preview: the newest version the server announced; the result once done.
  const version = done ? "final" : job.preview;
  const view = kindView(job);
  if (done && job.kind === "clip") {
    // A finished clip plays in its player (clips.js): no picture to load.
  } else if (view && view.ownsPicture && view.ownsPicture(job)) {
    // The view shows a picture of its own (a plan's contact sheet) in stage(job).
  } else if ((job.preview > 0 || done) && state.shownPreview.get(job.id) !== version) {
    loadPreview(job.id, version);
  } else if (state.shownPreview.get(job.id) === version) {
    img.hidden = false;
  }
  renderCompare(done ? job : null);
  drawChart(state.history.get(job.id) || [], job.total);
  stageViews(job);
  clipsHook("stage", job, done);
}

// ---------------------------------------------------------------- compare

// The photo over the finished painting, in the same box with the same object-fit (the
// painting has the photo's aspect, so the two line up), shown left of a divider that the
// slider or a drag on the picture moves.
function renderCompare(job) {
  const photo = !!job && job.kind !== "texture";  // a texture has no photo to compare with
  const on = photo && state.comparing;
  $("compare-toggle").hidden = !photo;
  $("compare-toggle").setAttribute("aria-pressed", String(on));
  $("compare-toggle").textContent = on ? "Hide the photo" : "Compare with the photo";
  $("compare-range").hidden = !on;
  $("compare").hidden = !on;
  if (!on) return;
  const src = `/api/uploads/${job.content}/image`;
  const img = $("compare-photo");
  if (img.getAttribute("src") !== src) {
    img.onerror = () => {
      state.comparing = false;
      $("job-error").textContent = "the photo of this picture is no longer stored";
      renderCompare(job);
    };
    img.src = src;
  }
  setSplit($("compare-slider").value);
}

function setSplit(percent) {
  const v = Math.max(0, Math.min(100, Number(percent)));
  $("compare").style.setProperty("--split", `${v}%`);
  $("compare-slider").value = String(v);
}

function initCompare() {
  $("compare-toggle").addEventListener("click", () => {
    state.comparing = !state.comparing;
    renderStage();
  });
  $("compare-slider").addEventListener("input", (e) => setSplit(e.target.value));
  const box = $("compare");
  const drag = (e) => {
    const r = box.getBoundingClientRect();
    setSplit((100 * (e.clientX - r.left)) / r.width);
  };
  box.addEventListener("pointerdown", (e) => { box.setPointerCapture(e.pointerId); drag(e); });
  box.addEventListener("pointermove", (e) => { if (box.hasPointerCapture(e.pointerId)) drag(e); });
}

let previewLoading = false, previewWanted = null;
function loadPreview(id, version) {
  previewWanted = { id, version };
  if (previewLoading) return;  // one request at a time; the newest wins
  previewLoading = true;
  const want = previewWanted;
  const next = new Image();
  const done = () => {
    previewLoading = false;
    if (previewWanted && (previewWanted.id !== want.id || previewWanted.version !== want.version)) {
      loadPreview(previewWanted.id, previewWanted.version);
    }
  };
  next.onload = () => {
    const shown = state.jobs.get(want.id);
    // A frame that lands after its clip finished: the clip's player is shown instead.
    const played = shown && shown.kind === "clip" && shown.state === "done";
    if (state.selected === want.id && !played) {
      const img = $("preview");
      img.src = next.src;
      img.dataset.job = want.id;
      img.dataset.version = want.version;
      img.hidden = false;
      $("placeholder").hidden = true;
      state.shownPreview.set(want.id, want.version);
    }
    done();
  };
  next.onerror = done;
  next.src = `/api/jobs/${want.id}/preview?v=${want.version}`;
}

function queueItem(job) {
  const active = !TERMINAL.has(job.state);
  let line2;
  if (job.state === "queued") line2 = job.place ? `${ordinal(job.place)} in queue` : "waiting";
  else if (job.state === "running" && job.kind === "clip" && job.detail && job.step) {
    line2 = `frame ${job.detail.frame || 1}/${job.detail.frames}`;
  } else if (job.state === "running") line2 = job.step ? `step ${job.step}/${job.total}` : "starting";
  else if (job.error) line2 = job.error;
  else line2 = job.size ? `${job.size[0]}×${job.size[1]}` : "";
  if (kindView(job) && kindView(job).line2) line2 = kindView(job).line2(job) || line2;
  const li = el("li", {
    class: job.id === state.selected ? "selected" : "", "data-job": job.id, "data-state": job.state,
    title: job.error || `job ${job.id}`, onclick: () => select(job.id),
  }, [
    // The photo may have been deleted since (DELETE /api/uploads/{id}): no broken icon.
    // A texture, which has no photo, shows its (first) painting.
    el("img", { src: `/api/uploads/${job.content || job.styles[0]}/thumb`, alt: "",
                onerror: (e) => { e.target.style.visibility = "hidden"; } }),
    el("div", { class: "info" }, [
      el("div", { class: "line1" }, [
        el("span", { class: `badge ${job.state}`, text: job.state }),
        el("span", { class: "small", text: shortId(job.id) }),
      ]),
      el("div", { class: "line2", text: line2 }),
      el("div", { class: "mini" }, [el("div")]),
    ]),
  ]);
  li.querySelector(".mini div").style.width = `${100 * (job.state === "done" ? 1 : job.progress || 0)}%`;
  if (active) {
    li.append(el("button", {
      class: "x", type: "button", title: "cancel", "aria-label": "cancel",
      onclick: (e) => {
        e.stopPropagation();
        api(`/api/jobs/${job.id}/cancel`, { method: "POST" }).then(updateJob).catch(() => {});
      },
    }, ["×"]));
  } else {
    li.append(el("span"));
  }
  return li;
}

function renderQueue() {
  const jobs = [...state.jobs.values()];
  const active = jobs.filter((j) => !TERMINAL.has(j.state))
    .sort((a, b) => (a.place ?? 99) - (b.place ?? 99) || a.created - b.created);
  const recent = jobs.filter((j) => TERMINAL.has(j.state) && j.state !== "done")
    .sort((a, b) => (b.finished || 0) - (a.finished || 0)).slice(0, 6);
  const items = [...active, ...recent];
  $("queue").replaceChildren(...items.map(queueItem));
  $("queue-empty").hidden = items.length > 0;
}

async function loadGallery() {
  try {
    const data = await api("/api/gallery?limit=60");
    state.gallery = data.results;
    for (const job of data.results) {
      if (!state.jobs.has(job.id) || TERMINAL.has(state.jobs.get(job.id).state)) {
        state.jobs.set(job.id, Object.assign({}, state.jobs.get(job.id) || {}, job));
      }
    }
    renderGallery();
  } catch (err) { /* the next event retries */ }
}

function renderGallery() {
  $("gallery").replaceChildren(...state.gallery.map((job) => {
    const button = el("button", {
      type: "button", class: job.id === state.selected ? "selected" : "", "data-job": job.id,
      title: `${job.size ? job.size[0] + "×" + job.size[1] : ""} · ${new Date(job.finished * 1000).toLocaleString()}`,
      onclick: () => select(job.id),
    }, [el("img", { src: `/api/jobs/${job.id}/thumb`, alt: `result ${shortId(job.id)}` })]);
    if (kindView(job) && kindView(job).galleryItem) kindView(job).galleryItem(job, button);
    if (job.kind === "clip") button.append(el("span", { class: "kind", text: "clip" }));
    return button;
  }));
  $("gallery-empty").hidden = state.gallery.length > 0;
}

// ---------------------------------------------------------------- the loss curve

const SERIES = [
  { key: "total", label: "total", color: "#22252b", width: 2 },
  { key: "style", label: "style", color: "#b4532a", width: 1.5 },
  { key: "content", label: "content", color: "#2f5d9e", width: 1.5 },
  { key: "tv", label: "TV", color: "#7a8a3a", width: 1.5 },
  { key: "structure", label: "structure", color: "#7b4fa0", width: 1.5 },
  { key: "matting", label: "matting", color: "#d08a2c", width: 1.5 },
];

function drawChart(points, total) {
  const canvas = $("loss-chart");
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth, h = canvas.clientHeight;
  if (!w || !h) return;
  canvas.width = Math.round(w * dpr);
  canvas.height = Math.round(h * dpr);
  const g = canvas.getContext("2d");
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, h);
  canvas.dataset.points = String(points.length);
  const pad = { left: 54, right: 14, top: 24, bottom: 34 };
  const pw = w - pad.left - pad.right, ph = h - pad.top - pad.bottom;
  g.font = "12px system-ui, sans-serif";
  g.fillStyle = "#22252b";
  g.textBaseline = "alphabetic";
  g.fillText("Loss (log scale)", pad.left, 14);

  const series = SERIES.filter((s) => points.some((p) => p[s.key] > 0));
  let lo = Infinity, hi = -Infinity;
  for (const p of points) for (const s of series) {
    const v = p[s.key];
    if (v > 0) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  }
  const xmax = Math.max(total || 0, points.length ? points[points.length - 1].step : 0, 1);
  let dlo, dhi;
  if (isFinite(lo)) { dlo = Math.floor(Math.log10(lo)); dhi = Math.ceil(Math.log10(hi)); }
  else { dlo = 0; dhi = 4; }
  if (dhi <= dlo) dhi = dlo + 1;
  dlo = Math.max(dlo, dhi - 7);  // a loss near 0 (content at the start) would flatten the rest
  // ... but every series' latest value stays in view: a texture's first steps from noise
  // sit many decades above where it ends, and those are cut off at the top instead.
  const latest = points.length ? Math.min(...series.map((s) => points[points.length - 1][s.key])
    .filter((v) => v > 0)) : Infinity;
  if (isFinite(latest) && Math.floor(Math.log10(latest)) < dlo) {
    dlo = Math.floor(Math.log10(latest));
    dhi = dlo + 7;
  }
  canvas.dataset.decades = `${dlo},${dhi}`;
  const X = (step) => pad.left + pw * (step / xmax);
  const Y = (v) => pad.top + ph * (1 - (Math.log10(v) - dlo) / (dhi - dlo));

  // Grid and axes: decades on y, round steps on x.
  g.strokeStyle = "#ece9e2"; g.lineWidth = 1; g.fillStyle = "#6b7079";
  g.textAlign = "right"; g.textBaseline = "middle";
  const every = Math.max(1, Math.ceil((dhi - dlo) / 6));
  for (let d = dlo; d <= dhi; d += every) {
    const y = Math.round(Y(Math.pow(10, d))) + 0.5;
    g.beginPath(); g.moveTo(pad.left, y); g.lineTo(pad.left + pw, y); g.stroke();
    g.fillText(d === 0 ? "1" : d === 1 ? "10" : `1e${d}`, pad.left - 6, y);
  }
  g.textAlign = "center"; g.textBaseline = "top";
  const stepTick = niceStep(xmax / 6);
  for (let s = 0; s <= xmax + 1e-9; s += stepTick) {
    const x = Math.round(X(s)) + 0.5;
    g.beginPath(); g.moveTo(x, pad.top + ph); g.lineTo(x, pad.top + ph + 4); g.strokeStyle = "#b9b4a9"; g.stroke();
    g.fillText(String(s), x, pad.top + ph + 6);
  }
  g.strokeStyle = "#b9b4a9";
  g.beginPath(); g.moveTo(pad.left + 0.5, pad.top); g.lineTo(pad.left + 0.5, pad.top + ph);
  g.lineTo(pad.left + pw, pad.top + ph + 0.5); g.stroke();
  g.fillStyle = "#6b7079";
  g.fillText("evaluation (step)", pad.left + pw / 2, pad.top + ph + 20);

  // Where a finer scale starts, the losses jump: mark it.
  g.setLineDash([3, 3]); g.strokeStyle = "#c9c4b8"; g.textAlign = "left"; g.textBaseline = "top";
  for (let i = 1; i < points.length; i++) {
    if (points[i].scale !== points[i - 1].scale) {
      const x = Math.round(X(points[i].step - 0.5)) + 0.5;
      g.beginPath(); g.moveTo(x, pad.top); g.lineTo(x, pad.top + ph); g.stroke();
      g.fillText(`scale ${points[i].scale + 1}`, x + 3, pad.top + 2);
    }
  }
  g.setLineDash([]);

  if (!points.length) {
    g.textAlign = "center"; g.textBaseline = "middle"; g.fillStyle = "#9a9ea6";
    g.fillText("The losses appear here while a picture is painted.", pad.left + pw / 2, pad.top + ph / 2);
    return;
  }
  g.save();
  g.beginPath(); g.rect(pad.left, pad.top, pw, ph); g.clip();
  for (const s of series) {
    g.strokeStyle = s.color; g.lineWidth = s.width; g.beginPath();
    let started = false;
    for (const p of points) {
      const v = p[s.key];
      if (!(v > 0)) { started = false; continue; }
      if (!started) { g.moveTo(X(p.step), Y(v)); started = true; } else g.lineTo(X(p.step), Y(v));
    }
    g.stroke();
  }
  g.restore();

  // Legend, top right, with each series' latest value.
  const last = points[points.length - 1];
  g.textAlign = "left"; g.textBaseline = "middle";
  let x = pad.left + pw;
  const entries = series.map((s) => `${s.label} ${fmtNumber(last[s.key])}`);
  for (let i = series.length - 1; i >= 0; i--) {
    const text = entries[i];
    const tw = g.measureText(text).width;
    x -= tw + 26;
    g.fillStyle = series[i].color; g.fillRect(x, 9, 14, 3);
    g.fillStyle = "#22252b"; g.fillText(text, x + 18, 11);
  }
}

function niceStep(raw) {
  const p = Math.pow(10, Math.floor(Math.log10(Math.max(raw, 1))));
  for (const m of [1, 2, 5, 10]) if (m * p >= raw) return m * p;
  return 10 * p;
}

// ---------------------------------------------------------------- live updates

let source = null;
function connect() {
  source = new EventSource("/api/events");
  const status = $("connection");
  source.addEventListener("open", () => {
    status.textContent = "live";
    status.className = "connection live";
    resync();
  });
  const mine = source;
  source.addEventListener("error", () => {
    status.textContent = "reconnecting…";
    status.className = "connection lost";
    // A refused stream (429/503: the studio's stream limits) closes for good, where a
    // dropped one retries by itself: try again after the server's Retry-After.
    if (mine.readyState === EventSource.CLOSED && source === mine) {
      setTimeout(connect, 10000);
    }
  });
  source.addEventListener("job", (e) => updateJob(JSON.parse(e.data)));
}

async function resync() {
  // After a (re)connection, catch up on anything missed while away.
  try {
    const data = await api("/api/jobs?limit=30");
    for (const job of data.jobs) state.jobs.set(job.id, Object.assign({}, state.jobs.get(job.id) || {}, job));
    renderQueue();
    // A page opened while a job runs (say, after the studio was restarted and the
    // job went on from its checkpoint) shows that job; otherwise it keeps its choice.
    const running = data.jobs.find((j) => j.state === "running");
    if (!state.selected && running) await select(running.id);
    else if (state.selected) await select(state.selected);
  } catch (err) { /* try again on the next open */ }
  loadGallery();
}

async function init() {
  setupForm();
  setupDrop("content");
  setupDrop("style");
  setupRegions();
  setupTexture();
  $("cancel").addEventListener("click", cancelJob);
  $("delete").addEventListener("click", deleteJob);
  $("reopen").addEventListener("click", reopen);
  initCompare();
  window.addEventListener("resize", () => renderStage());
  try {
    state.config = await api("/api/config");
  } catch (err) {
    $("form-error").textContent = `cannot reach the studio: ${err.message}`;
    return;
  }
  const model = $("model");
  for (const m of state.config.models) {
    // The studio paints only with weights already on the server; it never fetches them.
    const attrs = { value: m.name, title: m.description,
      text: m.present ? m.name : `${m.name} (not installed on the server)` };
    if (!m.present) attrs.disabled = "";
    model.append(el("option", attrs));
  }
  $("size-range").max = Math.min(1024, state.config.limits.max_size);
  $("size").max = state.config.limits.max_size;
  $("iterations").max = state.config.limits.max_iterations;
  $("texture-width").max = $("texture-height").max = state.config.limits.max_size;
  resetForm();
  renderStage();
  connect();
  document.body.dataset.ready = "1";
}

document.addEventListener("DOMContentLoaded", init);
