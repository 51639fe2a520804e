// brushwork studio page: clips.  A short video painted frame by frame
// (brushwork/studio/clips.py): the Photo / Clip switch, the video upload, the video knobs,
// the estimate, and on the stage "frame 3 of 12" while it paints and a player when done.
// studio.js calls in through window.brushworkClips (its clipsHook).
"use strict";

(() => {
  const clips = { config: null, clip: null };  // clip: the uploaded video's JSON

  function active() {
    return !!clips.config && clips.config.available &&
      $("mode-clip").getAttribute("aria-selected") === "true";
  }

  // The tabs and the sections they show are plans.js's setMode; here what a clip changes.
  function modeChanged() {
    const on = active();
    $("start").textContent = on ? "Paint the clip" : "Paint";
    scheduleEstimate();
  }

  function describe(up) {
    const v = up.video;
    return `${up.width}×${up.height}, ${v.frames} frames, ${fmtNumber(v.duration)} s at ` +
      `${fmtNumber(v.fps)} fps (${v.codec})`;
  }

  function renderClip() {
    const up = clips.clip;
    const remove = up && el("button", {
      class: "remove", type: "button", title: "remove", "aria-label": `remove ${up.name}`,
      onclick: () => { clips.clip = null; renderClip(); },
    }, ["×"]);
    $("clip-thumbs").replaceChildren(...(up ? [el("div", { class: "thumb", "data-upload": up.id }, [
      el("img", { src: `/api/uploads/${up.id}/thumb`, alt: up.name }),
      el("span", { class: "name", text: up.name, title: up.name }),
      remove,
    ])] : []));
    $("clip-info").textContent = up ? describe(up) : "";
    scheduleEstimate();
  }

  async function upload(files) {
    if (!files.length) return;
    const file = files[0];
    $("clip-error").textContent = "";
    $("clip-info").textContent = `reading ${file.name}…`;
    const form = new FormData();
    form.append("file", file);
    try {
      clips.clip = await api("/api/upload/clip", { method: "POST", body: form });
    } catch (err) {
      $("clip-error").textContent = `${file.name}: ${err.message}`;
    }
    renderClip();
  }

  function number(id, { int = false, optional = false } = {}) {
    const input = $(id);
    input.classList.remove("invalid");
    const text = input.value.trim();
    if (text === "" && optional) return undefined;
    const v = Number(text);
    if (text === "" || !isFinite(v) || v < 0) {
      input.classList.add("invalid");
      throw new Error(`${input.closest(".row").querySelector("label").textContent.trim()}: not a number`);
    }
    return int ? Math.round(v) : v;
  }

  // The picture options (studio.js) and the video knobs.
  function options() {
    const out = readOptions();
    out.frame_iterations = number("frame_iterations", { int: true });
    out.temporal_weight = number("temporal_weight");
    for (const [name, id] of [["fps", "clip_fps"], ["start", "clip_start"], ["end", "clip_end"]]) {
      const v = number(id, { optional: true });
      if (v !== undefined) out[name] = v;
    }
    return out;
  }

  function request() {
    return { content: clips.clip.id, styles: state.styles.map((s) => s.id), options: options() };
  }

  async function estimate(box, asked, current) {
    if (!clips.clip || !state.styles.length) { box.textContent = ""; return; }
    let body;
    try { body = request(); } catch (err) { box.textContent = ""; return; }
    try {
      const reply = await api("/api/clips/estimate", {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
      });
      if (current()) { box.textContent = reply.text; box.classList.remove("error"); }
    } catch (err) {
      if (current()) { box.textContent = err.message; box.classList.add("error"); }
    }
  }

  async function start(errorBox) {
    if (!clips.clip) { errorBox.textContent = "Choose a video first."; return; }
    if (!state.styles.length) { errorBox.textContent = "Choose at least one painting."; return; }
    let body;
    try { body = request(); } catch (err) { errorBox.textContent = err.message; return; }
    const button = $("start");
    button.disabled = true;
    try {
      const job = await api("/api/clips", {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
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

  // The stage for a clip job: the frame being painted is the preview (studio.js); once
  // done, the video plays in the page and downloads as an MP4.
  function stage(job, done) {
    const video = $("clip-video");
    const isClip = !!job && job.kind === "clip";
    const playing = isClip && done;
    if (playing) {
      const src = `/api/jobs/${job.id}/video`;
      if (video.getAttribute("src") !== src) video.src = src;
      $("download-clip").href = `${src}?download=1`;
      $("preview").hidden = true;
      $("placeholder").hidden = true;
    } else if (video.getAttribute("src")) {
      video.pause();
      video.removeAttribute("src");
      video.load();
    }
    video.hidden = !playing;
    $("download-clip").hidden = !playing;
    if (isClip) {
      // No PNG, settings file, photo to compare with, or form to reload for a clip.
      for (const id of ["download", "download-settings", "compare-toggle", "compare-range",
                        "compare", "reopen"]) $(id).hidden = true;
    }
  }

  async function init() {
    try {
      clips.config = await api("/api/clips/config");
    } catch (err) {
      clips.config = { available: false, reason: err.message };
    }
    const note = $("clip-unavailable");
    if (!clips.config.available) {
      $("mode-clip").disabled = true;
      $("mode-clip").title = clips.config.reason || "";
      note.textContent = `Clips: ${clips.config.reason}`;
      note.hidden = false;
    } else {
      const d = clips.config.defaults;
      $("frame_iterations").value = d.frame_iterations;
      $("temporal_weight").value = d.temporal_weight;
      const l = clips.config.limits;
      $("clip-drop").title = `at most ${l.max_clip_seconds} s, ${l.max_clip_frames} frames, ` +
        `${(l.max_clip_bytes / 2 ** 20).toFixed(0)} MB`;
    }
    $("mode-clip").addEventListener("click", () => setMode("clip"));
    for (const id of ["frame_iterations", "temporal_weight", "clip_fps", "clip_start", "clip_end"]) {
      $(id).addEventListener("input", scheduleEstimate);
    }
    const drop = $("clip-drop"), input = $("clip-input");
    input.addEventListener("change", () => { upload([...input.files]); input.value = ""; });
    for (const ev of ["dragenter", "dragover"]) {
      drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.add("over"); });
    }
    for (const ev of ["dragleave", "drop"]) {
      drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.remove("over"); });
    }
    drop.addEventListener("drop", (e) => upload([...e.dataTransfer.files]));
    modeChanged();
    document.body.dataset.clipsReady = "1";
  }

  window.brushworkClips = { active, estimate, start, stage, modeChanged };
  document.addEventListener("DOMContentLoaded", init);
})();
