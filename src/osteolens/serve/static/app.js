// osteolens web page: upload a radiograph, show the prediction, the heat map and the model card.
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

function renderCard(data) {
  card = data;
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
  const covariates = data.covariates || [];
  $("covariates").hidden = covariates.length === 0;
  $("sex-field").hidden = !covariates.includes("sex");
  $("age-field").hidden = !covariates.includes("age");
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

function renderResult(result, fileName) {
  $("result").hidden = false;
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
  if (result.overlay_png) $("overlay-img").src = result.overlay_png;
  if (result.heatmap_png) $("heatmap-img").src = result.heatmap_png;
  $("heatmap-caption").textContent = "Heat map for “" + result.cam_class + "” (" +
    (result.cam_method === "gradcam++" ? "Grad-CAM++" : "Grad-CAM") + ", jet)";
  $("images").hidden = !result.heatmap_png;
}

async function upload(file) {
  if (!file) return;
  if (!card) await loadCard();
  setStatus("Analysing " + file.name + " …");
  const form = new FormData();
  form.append("file", file);
  form.append("cam", "true");
  form.append("max_side", "1200");
  form.append("cam_method", $("gradcampp").checked ? "gradcam++" : "gradcam");
  if ($("cam-class").value) form.append("cam_class", $("cam-class").value);
  if (!$("sex-field").hidden && $("sex").value) form.append("sex", $("sex").value);
  if (!$("age-field").hidden && $("age").value) form.append("age", $("age").value);
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
  renderResult(body, file.name);
  setStatus("Done in " + Math.round(body.timing_ms.total) + " ms (request " + body.request_id + ").");
}

function setUp() {
  const zone = $("drop-zone");
  $("file-input").addEventListener("change", (event) => upload(event.target.files[0]));
  ["dragenter", "dragover"].forEach((name) =>
    zone.addEventListener(name, (event) => { event.preventDefault(); zone.classList.add("over"); }));
  ["dragleave", "drop"].forEach((name) =>
    zone.addEventListener(name, (event) => { event.preventDefault(); zone.classList.remove("over"); }));
  zone.addEventListener("drop", (event) => upload(event.dataTransfer.files[0]));
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
