// osteolens web page: upload a radiograph, show the prediction, the heat map and the model card
// (a landmark bundle: the overlay of the vertebral corners, the Cobb angles and each vertebra).
// Plain browser JavaScript, no external libraries (the page works offline).
"use strict";

const $ = (id) => document.getElementById(id);
let card = null;

function token() {
  return $("token").value.trim();
}

function authHeaders() {
  const value = token();
  return value ? { Authorization: "Bearer " + value } : {};
}

function setStatus(text, isError) {
  const box = $("status");
  box.textContent = text;
  box.classList.toggle("error", Boolean(isError));
}

function percent(p) {
  return (100 * p).toFixed(1) + " %";
}

function addRow(list, key, value) {
  if (value === null || value === undefined || value === "") return;
  const dt = document.createElement("dt");
  dt.textContent = key;
  const dd = document.createElement("dd");
  dd.textContent = typeof value === "object" ? JSON.stringify(value) : String(value);
  list.append(dt, dd);
}

function formatMetrics(metrics) {
  if (!metrics) return null;
  return Object.entries(metrics)
    .filter(([, v]) => v !== null && (typeof v === "number" || (typeof v === "object" && "value" in v)))
    .map(([k, v]) => {
      if (typeof v === "number") return k + " " + v.toFixed(3);
      const ci = Array.isArray(v.ci) ? " (" + v.ci.map((x) => x.toFixed(3)).join("–") + ")" : "";
      return k + " " + Number(v.value).toFixed(3) + ci;
    })
    .join("; ");
}

function isLandmarks() {
  return Boolean(card) && card.task === "landmarks";
}

function renderLandmarkCard(data) {
  const levels = data.labels || [];
  $("model-name").textContent = data.name + " · vertebral landmarks · " + data.view + " · " +
    levels[0] + "–" + levels[levels.length - 1];
  const list = $("card");
  list.replaceChildren();
  addRow(list, "Model", data.name);
  addRow(list, "Task", "vertebral landmarks (corners, heights, Cobb angles)");
  addRow(list, "View", data.view);
  addRow(list, "Levels", levels.join(", "));
  addRow(list, "Architecture", data.architecture);
  addRow(list, "Input size", (data.input_size || []).join(" × "));
  addRow(list, "Metrics", formatMetrics(data.metrics));
  addRow(list, "Created", data.created);
  addRow(list, "Backend", data.backend);
  addRow(list, "Digest", data.digest);
  // Classifier-only controls: no covariates, no Grad-CAM.
  for (const id of ["covariates", "cam-method-field", "cam-class-field"]) $(id).hidden = true;
  renderViewInputs([]);
}

function renderCard(data) {
  card = data;
  if (isLandmarks()) {
    renderLandmarkCard(data);
    return;
  }
  $("model-name").textContent = data.name + " · " + data.task + " · " + (data.labels || []).join(" / ");
  const list = $("card");
  list.replaceChildren();
  addRow(list, "Model", data.name);
  addRow(list, "Task", data.task);
  addRow(list, "Classes", (data.labels || []).join(", "));
  addRow(list, "Target", data.target);
  addRow(list, "Threshold", data.threshold);
  addRow(list, "Architecture", data.architecture);
  addRow(list, "Input size", (data.input_size || []).join(" × "));
  addRow(list, "Folds", data.folds);
  addRow(list, "Views", (data.views || []).join(" + "));
  addRow(list, "Covariates", (data.covariates || []).join(", ") || "none");
  addRow(list, "Calibrated", data.calibrated ? "yes" : "no");
  addRow(list, "Preprocessing", (data.preprocessing || []).join(" → "));
  addRow(list, "Metrics", formatMetrics(data.metrics));
  addRow(list, "Created", data.created);
  addRow(list, "Backend", data.backend);
  addRow(list, "Digest", data.digest);
  const select = $("cam-class");
  select.replaceChildren(select.options[0]);
  for (const name of data.labels || []) {
    const option = document.createElement("option");
    option.value = name;
    option.textContent = name;
    select.append(option);
  }
  $("cam-class-field").hidden = (data.labels || []).length === 0;
  renderViewInputs(data.views || []);
  const covariates = data.covariates || [];
  $("covariates").hidden = covariates.length === 0;
  $("sex-field").hidden = !covariates.includes("sex");
  $("age-field").hidden = !covariates.includes("age");
}

// A multi-view model (e.g. AP + lateral) gets one file input per view instead of the drop zone.
function renderViewInputs(views) {
  $("drop-zone").hidden = views.length > 0;
  $("view-panel").hidden = views.length === 0;
  const box = $("view-inputs");
  box.replaceChildren();
  for (const name of views) {
    const label = document.createElement("label");
    label.className = "inline";
    label.textContent = name + " ";
    const input = document.createElement("input");
    input.type = "file";
    input.dataset.view = name;
    input.accept = $("file-input").accept;
    input.addEventListener("change", () => {
      $("analyse").disabled = [...box.querySelectorAll("input")].some((i) => !i.files.length);
    });
    label.append(input);
    box.append(label);
  }
}

function chosenViews() {
  return [...$("view-inputs").querySelectorAll("input")].map((input) => [input.dataset.view, input.files[0]]);
}

async function loadCard() {
  const response = await fetch("/v1/model", { headers: authHeaders() });
  if (response.status === 401) {
    $("token-box").open = true;
    $("model-name").textContent = "access token needed";
    setStatus("This service needs an access token: enter it under “Access token”, then drop an image.", true);
    return;
  }
  if (!response.ok) {
    setStatus("Could not load the model card (HTTP " + response.status + ").", true);
    return;
  }
  renderCard(await response.json());
  setStatus("");
}

function headerRow(table, names) {
  const row = table.createTHead().insertRow();
  for (const name of names) {
    const th = document.createElement("th");
    th.textContent = name;
    row.append(th);
  }
}

function renderLandmarks(result, fileName) {
  const vertebrae = result.vertebrae;
  const low = result.low_confidence_count;
  $("label").textContent = vertebrae.length + " vertebrae";
  $("label").classList.remove("positive", "negative");
  $("file-name").textContent = fileName + " · " + result.view + " · " + result.image_shape[1] + " × " +
    result.image_shape[0] + " px" + (low ? " · " + low + " low confidence" : "") +
    (result.levels_uncertain ? " · levels uncertain: check the end vertebrae" : "") +
    (result.unreliable ? " · unreliable detection: see the note" : "");
  $("probability-box").hidden = true;
  $("class-table").replaceChildren();
  const cobb = $("cobb-table");
  cobb.replaceChildren();
  if (result.cobb) {
    headerRow(cobb, ["Angle", "Degrees", "End vertebrae"]);
    const body = cobb.createTBody();
    for (const [key, name] of [["pt", "PT (largest curve)"], ["mt", "MT"], ["tl", "TL"]]) {
      const angle = result.cobb[key];
      const row = body.insertRow();
      row.insertCell().textContent = name;
      row.insertCell().textContent = angle.degrees.toFixed(1) + "°";
      row.insertCell().textContent = angle.upper + " – " + angle.lower;
    }
  }
  cobb.hidden = !result.cobb;
  $("cobb-note").textContent = result.cobb_note || (result.cobb ? (result.cobb.s_shaped ? "S-shaped spine." : "") :
    "No Cobb angles.");
  const table = $("vertebra-table");
  table.replaceChildren();
  headerRow(table, ["Vertebra", "Confidence", "Problems"]);
  const body = table.createTBody();
  for (const v of vertebrae) {
    const row = body.insertRow();
    row.classList.toggle("low-confidence", v.low_confidence);
    row.classList.toggle("levels-uncertain", v.problems.some((p) => p.startsWith("levels_uncertain")));
    row.insertCell().textContent = v.name + (v.low_confidence ? " ⚠ low confidence" : "");
    row.insertCell().textContent = percent(v.confidence);
    row.insertCell().textContent = v.problems.join("; ");
  }
  $("images").replaceChildren(figure(result.overlay_png, "Vertebral corners on the radiograph",
    "Overlay: corners and heights per vertebra, Cobb end vertebrae in magenta, “!” = a problem to check"));
  $("images").classList.add("single");  // one overlay, full width
  $("images").hidden = false;
}

function renderResult(result, fileName) {
  $("result").hidden = false;
  const landmarks = result.task === "landmarks";
  $("landmark-result").hidden = !landmarks;
  $("landmark-note").hidden = !landmarks;
  $("cam-note").hidden = landmarks;
  if (landmarks) {
    renderLandmarks(result, fileName);
    return;
  }
  const label = $("label");
  label.textContent = result.diagnosis;
  const labels = (card && card.labels) || [];
  label.classList.toggle("positive", result.task === "binary" && result.label === labels[1]);
  label.classList.toggle("negative", result.task === "binary" && result.label === labels[0]);
  $("file-name").textContent = fileName;
  const box = $("probability-box");
  if (result.probability === null || result.probability === undefined) {
    box.hidden = true;
  } else {
    box.hidden = false;
    const binary = result.task === "binary";
    const positive = binary ? labels[1] : result.label;
    $("probability-text").textContent = "P(" + positive + ") = " + percent(result.probability);
    $("gauge-fill").style.width = percent(result.probability).replace(" ", "");
    const marker = $("gauge-threshold");
    if (binary && result.threshold !== null) {
      marker.hidden = false;
      marker.style.left = "calc(" + (100 * result.threshold) + "% - 1px)";
      const side = result.probability >= result.threshold ? "at or above" : "below";
      $("threshold-text").textContent = side + " the decision threshold " + percent(result.threshold);
    } else {
      marker.hidden = true;
      $("threshold-text").textContent = "most probable class";
    }
  }
  const table = $("class-table");
  table.replaceChildren();
  for (const [name, p] of Object.entries(result.probabilities || {})) {
    const row = table.insertRow();
    row.insertCell().textContent = name;
    row.insertCell().textContent = percent(p);
  }
  const method = result.cam_method === "gradcam++" ? "Grad-CAM++" : "Grad-CAM";
  const panels = result.view_pngs
    ? Object.entries(result.view_pngs).map(([view, pngs]) => [view + ": ", pngs.overlay, pngs.heatmap])
    : [["", result.overlay_png, result.heatmap_png]];
  const images = $("images");
  images.replaceChildren();
  for (const [prefix, overlayPng, heatmapPng] of panels) {
    images.append(
      figure(overlayPng, prefix + "Grad-CAM overlay on the radiograph", prefix + "Overlay (heat map over the radiograph, alpha 0.4)"),
      figure(heatmapPng, prefix + "Grad-CAM heat map", prefix + "Heat map for “" + result.cam_class + "” (" + method + ", jet)"));
  }
  images.hidden = !result.heatmap_png;
}

function figure(src, alt, caption) {
  const box = document.createElement("figure");
  const img = document.createElement("img");
  img.src = src || "";
  img.alt = alt;
  const text = document.createElement("figcaption");
  text.textContent = caption;
  box.append(img, text);
  return box;
}

// files: [[view name or null, File], ...]: one entry, or one per view of a multi-view model.
async function upload(files) {
  if (!files.length || files.some(([, file]) => !file)) return;
  if (!card) await loadCard();
  const names = files.map(([view, file]) => (view ? view + ": " : "") + file.name).join(", ");
  setStatus("Analysing " + names + " …");
  const form = new FormData();
  for (const [view, file] of files) {
    form.append("file", file);
    if (view) form.append("view", view);
  }
  form.append("max_side", "1200");
  if (!isLandmarks()) {
    form.append("cam", "true");
    form.append("cam_method", $("gradcampp").checked ? "gradcam++" : "gradcam");
    if ($("cam-class").value) form.append("cam_class", $("cam-class").value);
    if (!$("sex-field").hidden && $("sex").value) form.append("sex", $("sex").value);
    if (!$("age-field").hidden && $("age").value) form.append("age", $("age").value);
  }
  let response;
  try {
    response = await fetch("/v1/predict", { method: "POST", body: form, headers: authHeaders() });
  } catch (error) {
    setStatus("The service could not be reached: " + error, true);
    return;
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail || body);
    setStatus("Not analysed (HTTP " + response.status + "): " + detail, true);
    return;
  }
  renderResult(body, names);
  const ms = body.timing_ms ? body.timing_ms.total : 1000 * body.seconds;
  setStatus("Done in " + Math.round(ms) + " ms (request " + body.request_id + ").");
}

function setUp() {
  const zone = $("drop-zone");
  $("file-input").addEventListener("change", (event) => upload([[null, event.target.files[0]]]));
  $("analyse").addEventListener("click", () => upload(chosenViews()));
  ["dragenter", "dragover"].forEach((name) =>
    zone.addEventListener(name, (event) => { event.preventDefault(); zone.classList.add("over"); }));
  ["dragleave", "drop"].forEach((name) =>
    zone.addEventListener(name, (event) => { event.preventDefault(); zone.classList.remove("over"); }));
  zone.addEventListener("drop", (event) => upload([[null, event.dataTransfer.files[0]]]));
  zone.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") { event.preventDefault(); $("file-input").click(); }
  });
  $("token").value = sessionStorage.getItem("osteolens-token") || "";
  $("token").addEventListener("change", () => {
    sessionStorage.setItem("osteolens-token", token());
    loadCard();
  });
  loadCard();
}

document.addEventListener("DOMContentLoaded", setUp);
