// RefineFuse web page: uses only the JSON API of this server (/api/info, /api/examples,
// /api/fuse, /api/evaluate); no external scripts, fonts or CDNs.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const state = { info: null, ir: null, vis: null, cards: [] };

function showError(message) {
  const box = $("#error");
  box.textContent = message;
  box.hidden = !message;
}

function setStatus(text) { $("#status").textContent = text; }

async function errorText(resp) {
  try {
    const body = await resp.json();
    if (typeof body.detail === "string") return body.detail;
    if (Array.isArray(body.detail)) return body.detail.map((d) => `${(d.loc || []).join(".")}: ${d.msg}`).join("; ");
  } catch (e) { /* not JSON */ }
  return `${resp.status} ${resp.statusText}`;
}

// ------------------------------------------------------------------ sources
function setSource(role, blob, name) {
  const limit = state.info ? state.info.limits.max_upload_bytes : Infinity;
  if (blob.size > limit) {
    showError(`${name}: ${blob.size} bytes is over the server's upload limit of ${limit} bytes`);
    return;
  }
  state[role] = { blob, name };
  const img = $(`#${role}-preview`);
  if (img.src) URL.revokeObjectURL(img.src);
  img.src = URL.createObjectURL(blob);
  img.hidden = false;
  $(`#${role}-name`).textContent = name;
  showError("");
}

function wireDrop(role) {
  const zone = $(`#drop-${role}`);
  const input = $(`#${role}-file`);
  input.addEventListener("change", () => { if (input.files[0]) setSource(role, input.files[0], input.files[0].name); });
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    const file = e.dataTransfer.files[0];
    if (file) setSource(role, file, file.name);
  });
}

async function useExample(ex) {
  showError("");
  setStatus(`loading example ${ex.title}…`);
  for (const role of ["ir", "vis"]) {
    const resp = await fetch(`/api/examples/${ex.name}/${role}`);
    if (!resp.ok) { showError(await errorText(resp)); setStatus(""); return; }
    setSource(role, await resp.blob(), `${ex.name}_${role}.png`);
  }
  $("#mode").value = ex.mode;
  $("#ir-label").textContent = ex.ir_label;
  $("#vis-label").textContent = ex.vis_label;
  setStatus(`example ${ex.title} loaded`);
}

// ------------------------------------------------------------------ results
function clearResults() {
  for (const card of state.cards) URL.revokeObjectURL(card.url);
  state.cards = [];
  $("#results").innerHTML = "";
  $("#metrics tbody").innerHTML = "";
  $("#scores").hidden = true;
}

function sourceUrl(role) { return $(`#${role}-preview`).src; }

function addCard(method, blob, seconds) {
  const url = URL.createObjectURL(blob);
  const node = $("#card-template").content.firstElementChild.cloneNode(true);
  node.dataset.method = method;
  $(".method", node).textContent = method;
  $(".tag.right", node).textContent = `fused: ${method}`;
  $(".fused", node).src = url;
  const source = $(".source", node);
  const stage = $(".stage", node);
  const divider = $(".divider", node);
  const slider = $(".slider", node);
  const compare = $(".compare-with", node);
  const zoom = $(".zoom", node);
  const applySlider = () => {
    const p = Number(slider.value);
    source.style.clipPath = `inset(0 ${100 - p}% 0 0)`;  // left of the divider: the source; right: fused
    divider.style.left = `${p}%`;
  };
  const applyCompare = () => {
    source.src = sourceUrl(compare.value);
    $(".tag.left", node).textContent = compare.options[compare.selectedIndex].textContent;
  };
  const applyZoom = () => {
    const z = Number(zoom.value);
    stage.style.width = `${100 * z}%`;
    stage.classList.toggle("zoomed", z > 1);
  };
  slider.addEventListener("input", applySlider);
  compare.addEventListener("change", applyCompare);
  zoom.addEventListener("change", applyZoom);
  applySlider(); applyCompare(); applyZoom();
  const link = $(".download", node);
  link.href = url;
  link.download = `fused_${method}.png`;
  $(".timing", node).textContent = seconds ? `fused in ${Number(seconds).toFixed(2)} s` : "";
  $("#results").appendChild(node);
  state.cards.push({ method, url });
}

function renderMetrics(rows) {
  const names = state.info.metrics;
  const lower = new Set(state.info.lower_is_better);
  $("#metrics thead").innerHTML = `<tr><th>Method</th>${names.map((n) => `<th>${n}</th>`).join("")}</tr>`;
  const best = {};
  for (const n of names) {
    const vals = rows.map((r) => r.metrics[n]).filter((v) => v !== null && v !== undefined);
    if (vals.length) best[n] = lower.has(n) ? Math.min(...vals) : Math.max(...vals);
  }
  $("#metrics tbody").innerHTML = rows.map((r) => {
    const cells = names.map((n) => {
      const v = r.metrics[n];
      const isBest = rows.length > 1 && v !== null && v === best[n];
      return `<td class="${isBest ? "best" : ""}">${v === null || v === undefined ? "–" : v.toFixed(4)}</td>`;
    }).join("");
    return `<tr data-method="${r.method}"><td>${r.method}</td>${cells}</tr>`;
  }).join("");
  $("#profile-note").textContent = `(profile ${state.info.profile}; best per column in bold)`;
  $("#scores").hidden = false;
}

function formData(fields) {
  const fd = new FormData();
  for (const [k, v] of Object.entries(fields)) {
    if (v && v.blob) fd.append(k, v.blob, v.name); else fd.append(k, v);
  }
  return fd;
}

async function runFusion() {
  showError("");
  if (!state.ir || !state.vis) { showError("choose both source images first (or an example)"); return; }
  const methods = [...document.querySelectorAll("#methods input:checked")].map((el) => el.value);
  if (!methods.length) { showError("choose at least one method"); return; }
  const mode = $("#mode").value;
  const button = $("#fuse-btn");
  button.disabled = true;
  clearResults();
  const rows = [];
  const t0 = performance.now();
  try {
    for (const method of methods) {
      setStatus(`fusing with ${method}…`);
      const resp = await fetch("/api/fuse", { method: "POST", body: formData({ ir: state.ir, vis: state.vis, method, mode }) });
      if (!resp.ok) { showError(`${method}: ${await errorText(resp)}`); break; }
      const blob = await resp.blob();
      addCard(method, blob, resp.headers.get("X-Fusion-Seconds"));
      setStatus(`scoring ${method}…`);
      const fused = { blob, name: `fused_${method}.png` };
      const ev = await fetch("/api/evaluate", { method: "POST", body: formData({ ir: state.ir, vis: state.vis, fused }) });
      if (!ev.ok) { showError(`${method}: ${await errorText(ev)}`); break; }
      rows.push({ method, metrics: (await ev.json()).metrics });
      renderMetrics(rows);
    }
    setStatus(`done: ${rows.length} of ${methods.length} method(s) in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  } catch (e) {
    showError(`request failed: ${e}`);
    setStatus("");
  } finally {
    button.disabled = false;
  }
}

// ------------------------------------------------------------------ start
async function init() {
  wireDrop("ir");
  wireDrop("vis");
  $("#fuse-btn").addEventListener("click", runFusion);
  const resp = await fetch("/api/info");
  if (!resp.ok) { showError(`cannot reach the server: ${await errorText(resp)}`); return; }
  state.info = await resp.json();
  const mode = $("#mode");
  for (const m of state.info.modes) mode.add(new Option(m, m));
  const box = $("#methods");
  const defaults = new Set([state.info.default_method, "max"]);
  for (const m of state.info.methods) {
    const label = document.createElement("label");
    label.innerHTML = `<input type="checkbox" value="${m}" ${defaults.has(m) ? "checked" : ""}> ${m}`;
    box.appendChild(label);
  }
  const examples = $("#examples");
  for (const ex of state.info.examples) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = ex.title;
    b.dataset.example = ex.name;
    b.disabled = !ex.available;
    if (!ex.available) b.title = "not available: its dataset is not under the server's data root";
    b.addEventListener("click", () => useExample(ex));
    examples.appendChild(b);
  }
  document.body.dataset.ready = "1";
}

init();
