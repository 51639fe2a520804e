// brushwork studio page: plans — several photos × several paintings (× strengths) as one
// job (POST /api/plans; brushwork/studio/plans.py).  Loaded after studio.js, whose
// helpers ($, el, api, state, readOptions, updateJob, select, KIND_VIEWS) it uses.
"use strict";

const plan = {
  mode: "picture",
  library: [],           // every upload, newest first (GET /api/uploads)
  photos: new Set(),     // upload ids ticked as photos
  styles: new Set(),     // ... and as paintings
  seeded: false,         // the picture form's choice copied in once
  estimateTimer: null,
  estimateAsked: 0,
};

// The page's mode, one of the tabs at the top of the left panel: "picture" (one photo),
// "clip" (a video; clips.js), "plan" (here) or "texture" (no photo; studio.js).  A section with data-mode shows only in
// the modes it lists.
function setMode(mode) {
  plan.mode = mode;
  const planning = mode === "plan";
  for (const tab of document.querySelectorAll('.modes [role="tab"]')) {
    tab.setAttribute("aria-selected", String(tab.id === `mode-${mode}`));
  }
  for (const section of document.querySelectorAll("[data-mode]")) {
    section.hidden = !section.dataset.mode.split(" ").includes(mode);
  }
  $("plan-panel").hidden = !planning;
  $("start").hidden = planning;
  $("plan-start").hidden = !planning;
  $("estimate").hidden = planning;
  $("plan-estimate").hidden = !planning;
  if (planning) {
    if (!plan.seeded) {
      if (state.content) plan.photos.add(state.content.id);
      for (const s of state.styles) plan.styles.add(s.id);
      plan.seeded = true;
    }
    loadLibrary();
  }
  clipsHook("modeChanged");
  textureModeChanged();
}

async function loadLibrary() {
  try {
    const data = await api("/api/uploads");
    plan.library = data.uploads;
    const known = new Set(plan.library.map((u) => u.id));
    for (const set of [plan.photos, plan.styles]) {
      for (const id of [...set]) if (!known.has(id)) set.delete(id);
    }
  } catch (err) {
    $("plan-error").textContent = err.message;
  }
  renderLibrary();
}

function tick(set, id, role, name) {
  const box = el("input", { type: "checkbox", "data-role": role, "aria-label": `${name} as a ${role}` });
  box.checked = set.has(id);
  box.addEventListener("change", () => {
    if (box.checked) set.add(id); else set.delete(id);
    renderCount();
  });
  return el("label", { class: "tick" }, [box, role]);
}

function renderLibrary() {
  $("plan-library").replaceChildren(...plan.library.map((u) => el("div", {
    class: "pick", "data-upload": u.id, title: `${u.name} · ${u.width}×${u.height}`,
  }, [
    el("img", { src: `/api/uploads/${u.id}/thumb`, alt: u.name }),
    el("span", { class: "name", text: u.name }),
    tick(plan.photos, u.id, "photo", u.name),
    tick(plan.styles, u.id, "painting", u.name),
  ])));
  renderCount();
}

// "0.3, 0.6, 1" -> [0.3, 0.6, 1]; empty -> null (the Options' strength); else an Error.
function readStrengths() {
  const text = $("plan-strengths").value.trim();
  if (!text) return null;
  const values = text.split(/[\s,;]+/).filter(Boolean).map(Number);
  if (values.some((v) => !isFinite(v))) throw new Error("Strengths: numbers separated by commas, such as 0.3, 0.6, 1");
  return values;
}

function planRequest() {
  const options = readOptions();
  const strengths = readStrengths();
  const request = { photos: [...plan.photos], styles: [...plan.styles], options };
  if (strengths) { request.strengths = strengths; delete request.options.strength; }
  return request;
}

function renderCount() {
  let strengths = null;
  try { strengths = readStrengths(); $("plan-strengths").classList.remove("invalid"); }
  catch (err) { $("plan-strengths").classList.add("invalid"); }
  const p = plan.photos.size, s = plan.styles.size, k = strengths ? strengths.length : 1;
  $("plan-count").textContent = !p || !s ? "Tick at least one photo and one painting." :
    `${p} photo${p === 1 ? "" : "s"} × ${s} painting${s === 1 ? "" : "s"}` +
    (strengths ? ` × ${k} strength${k === 1 ? "" : "s"}` : "") + ` = ${p * s * k} pictures`;
  schedulePlanEstimate();
}

function schedulePlanEstimate() {
  clearTimeout(plan.estimateTimer);
  plan.estimateTimer = setTimeout(refreshPlanEstimate, 400);
}

async function refreshPlanEstimate() {
  const box = $("plan-estimate");
  const asked = ++plan.estimateAsked;
  if (plan.mode !== "plan" || !plan.photos.size || !plan.styles.size) { box.textContent = ""; return; }
  let request;
  try { request = planRequest(); } catch (err) { box.textContent = ""; return; }
  try {
    const reply = await api("/api/plans/estimate", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(request),
    });
    if (asked === plan.estimateAsked) { box.textContent = reply.text; box.classList.remove("error"); }
  } catch (err) {
    if (asked === plan.estimateAsked) { box.textContent = err.message; box.classList.add("error"); }
  }
}

async function startPlan() {
  const errorBox = $("plan-error");
  errorBox.textContent = "";
  if (!plan.photos.size || !plan.styles.size) { errorBox.textContent = "Tick at least one photo and one painting."; return; }
  let request;
  try { request = planRequest(); } catch (err) { errorBox.textContent = err.message; return; }
  const button = $("plan-start");
  button.disabled = true;
  try {
    const job = await api("/api/plans", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(request),
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

async function addPictures(files) {
  $("plan-error").textContent = "";
  for (const file of files) {
    const form = new FormData();
    form.append("file", file);
    try { await api("/api/upload", { method: "POST", body: form }); }
    catch (err) { $("plan-error").textContent = `${file.name}: ${err.message}`; }
  }
  loadLibrary();
}

async function rerunPlan() {
  const id = state.selected;
  try {
    const job = await api(`/api/jobs/${id}/rerun`, { method: "POST" });
    state.history.set(id, []);
    state.shownPreview.delete(id);
    state.jobs.delete(id);  // the ended snapshot would otherwise outrank the queued one
    updateJob(job);
  } catch (err) { $("job-error").textContent = err.message; }
}

// ---------------------------------------------------------------- how a plan is shown

function planCounts(job) {
  const d = job.detail || {};
  const parts = [`${d.painted || 0} painted`, `${d.skipped || 0} skipped`];
  if (d.failed) parts.push(`${d.failed} failed`);
  return parts.join(", ");
}

function rowLabel(row) {
  return `${row.photo_name} × ${row.style_name}` + (row.strength != null ? ` · strength ${row.strength}` : "");
}

KIND_VIEWS.plan = {
  status(job) {
    const d = job.detail || {}, n = d.total || 0;
    if (job.state === "queued") {
      return `${n} pictures · ` + (job.place ? `waiting, ${ordinal(job.place)} in the queue` : "waiting");
    }
    if (job.state === "running") {
      const parts = [`picture ${d.current || (d.done || 0) + 1} of ${n}`];
      if (job.step) parts.push(`step ${job.step}/${job.total}`);
      parts.push(planCounts(job));
      if (job.elapsed) parts.push(fmtSeconds(job.elapsed));
      if (job.eta != null) parts.push(`about ${fmtSeconds(job.eta)} left`);
      return parts.join(" · ");
    }
    return `${n} pictures: ${planCounts(job)}` + (job.elapsed ? ` · ${fmtSeconds(job.elapsed)}` : "");
  },
  line2(job) {
    const d = job.detail || {};
    if (job.state === "running") return `plan · picture ${d.current || (d.done || 0) + 1} of ${d.total}`;
    if (job.state === "queued") return null;
    return job.error || `plan · ${d.total} pictures`;
  },
  ownsPicture(job) { return TERMINAL.has(job.state); },
  galleryItem(job, button) {
    // Its contact sheet, which a rerun keeps until it writes the next one.
    button.querySelector("img").src = `/api/jobs/${job.id}/sheet?v=${encodeURIComponent(job.finished || "")}`;
    button.classList.add("group");
    button.append(el("span", { class: "count", text: String((job.detail || {}).total || "") }));
    button.querySelector("img").alt = `plan ${shortId(job.id)}, ${(job.detail || {}).total} pictures`;
  },
  stage(job) {
    const view = $("plan-view");
    if (!job || job.kind !== "plan") { view.hidden = true; return; }
    view.hidden = false;
    const ended = TERMINAL.has(job.state);
    const d = job.detail || {};
    $("plan-summary").textContent = `${d.total || 0} pictures: ${planCounts(job)}`;
    $("reopen").hidden = true;
    $("plan-rerun").hidden = !ended;
    const hasSheet = ended && (d.done || 0) > 0;
    $("plan-sheet").hidden = !hasSheet;
    $("plan-index").hidden = !hasSheet;
    const v = encodeURIComponent(job.finished || "");
    $("plan-sheet").href = `/api/jobs/${job.id}/sheet?v=${v}`;
    $("plan-index").href = `/api/jobs/${job.id}/index`;
    $("plan-index").setAttribute("download", `brushwork-${job.id}-index.json`);
    $("plan-zip").hidden = !hasSheet;
    $("plan-zip").href = `/api/jobs/${job.id}/zip`;
    if (hasSheet) {  // the contact sheet on the stage once the plan has ended
      const img = $("preview");
      const src = `/api/jobs/${job.id}/sheet?v=${v}`;
      if (img.getAttribute("src") !== src) {
        img.src = src;
        state.shownPreview.clear();  // another job's preview is no longer on the screen
      }
      img.dataset.job = job.id;
      img.hidden = false;
      $("placeholder").hidden = true;
    }
    $("plan-rows").replaceChildren(...(d.rows || []).map((row) => {
      const picture = `/api/jobs/${job.id}/pictures/${row.row}?v=${v}`;
      const done = row.output && (row.state === "done" || row.state === "skipped");
      return el("li", { "data-row": row.row, "data-state": row.state, title: row.error || rowLabel(row) }, [
        done ? el("a", { class: "pic", href: picture, target: "_blank", rel: "noopener" },
          [el("img", { src: picture, alt: rowLabel(row), loading: "lazy" })])
          : el("span", { class: "pic empty" }),
        el("span", { class: "label", text: `${row.row}. ${rowLabel(row)}` }),
        el("span", { class: `badge ${row.state}`, text: row.state }),
        done ? el("a", { class: "save", href: picture, download: row.output, title: "download", text: "↓" })
          : el("span"),
      ]);
    }));
  },
};

function setupPlans() {
  $("mode-picture").addEventListener("click", () => setMode("picture"));
  $("mode-plan").addEventListener("click", () => setMode("plan"));
  $("plan-start").addEventListener("click", startPlan);
  $("plan-rerun").addEventListener("click", rerunPlan);
  $("plan-strengths").addEventListener("input", renderCount);
  const input = $("plan-input"), drop = $("plan-drop");
  input.addEventListener("change", () => { addPictures([...input.files]); input.value = ""; });
  for (const ev of ["dragenter", "dragover"]) {
    drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.add("over"); });
  }
  for (const ev of ["dragleave", "drop"]) {
    drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.remove("over"); });
  }
  drop.addEventListener("drop", (e) => addPictures([...e.dataTransfer.files]));
  for (const ev of ["input", "change"]) {
    document.querySelector(".controls .options").addEventListener(ev, schedulePlanEstimate);
  }
  $("advanced").addEventListener("toggle", schedulePlanEstimate);
}

document.addEventListener("DOMContentLoaded", setupPlans);
