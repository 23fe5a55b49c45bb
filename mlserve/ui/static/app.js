// mlserve ui: the page. It talks only to the app that served it (same origin); the app talks to
// the model server. No framework, no build step, nothing fetched from elsewhere.
"use strict";

const $ = (id) => document.getElementById(id);
const pad = $("pad");
const ctx = pad.getContext("2d");
let seq = 0;          // answers of an older request never overwrite a newer one
let drawing = false;
let inked = false;
window.mlserveLast = null;  // the last image sent and the app's answer (read by the tests)

function clearPad() {
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, pad.width, pad.height);
  inked = false;
}

function point(event) {
  const box = pad.getBoundingClientRect();
  return [(event.clientX - box.left) * pad.width / box.width,
          (event.clientY - box.top) * pad.height / box.height];
}

pad.addEventListener("pointerdown", (event) => {
  event.preventDefault();
  pad.setPointerCapture(event.pointerId);
  drawing = true;
  const [x, y] = point(event);
  ctx.strokeStyle = "#000";
  ctx.fillStyle = "#000";
  ctx.lineWidth = 18;
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  ctx.beginPath();
  ctx.arc(x, y, 9, 0, 2 * Math.PI);
  ctx.fill();
  ctx.beginPath();
  ctx.moveTo(x, y);
  inked = true;
});
pad.addEventListener("pointermove", (event) => {
  if (!drawing) return;
  const [x, y] = point(event);
  ctx.lineTo(x, y);
  ctx.stroke();
  ctx.beginPath();
  ctx.moveTo(x, y);
});
function endStroke() {
  if (!drawing) return;
  drawing = false;
  pad.toBlob((blob) => send(blob), "image/png");
}
pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);
pad.addEventListener("keydown", (event) => {
  if (event.key === "Delete" || event.key === "Backspace") { clearPad(); event.preventDefault(); }
});
$("clear").addEventListener("click", () => {
  clearPad();
  $("answers").innerHTML = '<p class="muted">Draw a digit or upload an image.</p>';
  $("seen").getContext("2d").clearRect(0, 0, 28, 28);
});
$("upload").addEventListener("change", (event) => {
  const file = event.target.files[0];
  if (!file) return;
  if (maxUpload && file.size > maxUpload) {  // the app refuses it too (413); say so before sending
    show({ error: file.name + " is " + file.size.toLocaleString() + " bytes, more than the " +
           maxUpload.toLocaleString() + " this page accepts", hint: "pick a smaller image (a digit needs a few KB)" }, 0);
    return;
  }
  send(file);
  createImageBitmap(file).then((bitmap) => {  // show the upload on the pad, fitted
    clearPad();
    const scale = Math.min(pad.width / bitmap.width, pad.height / bitmap.height);
    const w = bitmap.width * scale, h = bitmap.height * scale;
    ctx.drawImage(bitmap, (pad.width - w) / 2, (pad.height - h) / 2, w, h);
  }).catch(() => clearPad());
  event.target.value = "";
});
$("pick1").addEventListener("change", resend);
$("pick2").addEventListener("change", resend);

let lastBlob = null;
let maxUpload = 0;  // bytes, from /api/info
function resend() { if (lastBlob) send(lastBlob); }

function picks() {
  const out = [$("pick1").value || "latest"];
  if ($("pick2").value) out.push($("pick2").value);
  return out;
}

async function send(blob) {
  if (!blob) return;
  lastBlob = blob;
  const mine = ++seq;
  const query = picks().map((p) => "pick=" + encodeURIComponent(p)).join("&");
  const started = performance.now();
  let answer;
  try {
    const response = await fetch("/api/predict?" + query, {
      method: "POST", body: blob,
      headers: { "x-mlserve-ui": "1", "content-type": blob.type || "application/octet-stream" },
    });
    answer = await response.json();
    if (!response.ok) answer = { error: answer.error || ("HTTP " + response.status), hint: answer.hint };
  } catch (error) {
    answer = { error: "The ui app does not answer (" + error + ")", hint: "is `mlserve ui` still running?" };
  }
  if (mine !== seq) return;
  const roundTrip = performance.now() - started;
  window.mlserveLast = { png: await dataUrl(blob), answer: answer, roundTripMs: roundTrip };
  show(answer, roundTrip);
}

function dataUrl(blob) {
  return new Promise((resolve) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.readAsDataURL(blob);
  });
}

function element(tag, props, children) {
  const node = document.createElement(tag);
  Object.assign(node, props || {});
  for (const child of children || []) node.append(child);
  return node;
}

function show(answer, roundTrip) {
  const box = $("answers");
  box.replaceChildren();
  if (answer.error) {
    box.append(element("p", { className: "error", textContent: "Error: " + answer.error }));
    if (answer.hint) box.append(element("p", { className: "muted", textContent: "Hint: " + answer.hint }));
    return;
  }
  drawSeen(answer.image);
  for (const one of answer.answers) box.append(answerView(one, roundTrip));
}

function drawSeen(image) {
  const seen = $("seen").getContext("2d");
  const data = seen.createImageData(28, 28);
  for (let y = 0; y < 28; y++) for (let x = 0; x < 28; x++) {
    const v = Math.round(255 * image[y][x]);
    const i = 4 * (28 * y + x);
    data.data[i] = data.data[i + 1] = data.data[i + 2] = v;
    data.data[i + 3] = 255;
  }
  seen.putImageData(data, 0, 0);
}

function answerView(one, roundTrip) {
  const view = element("div", { className: "answer" });
  view.dataset.choice = one.choice;
  const title = one.choice === "latest" ? "latest version" : (one.choice.match(/^v\d+$/) ? "version " + one.choice.slice(1) : "label " + one.choice);
  view.append(element("h3", { textContent: title }));
  if (one.error) {
    view.dataset.error = one.error;
    view.append(element("p", { className: "error", textContent: "Error: " + one.error }));
    if (one.hint) view.append(element("p", { className: "muted", textContent: "Hint: " + one.hint }));
    return view;
  }
  view.dataset.predicted = one.predicted;
  view.dataset.version = one.version == null ? "" : one.version;
  view.dataset.probabilities = JSON.stringify(one.probabilities);
  const top = one.probabilities[one.predicted];
  view.append(element("p", { className: "big", textContent: String(one.predicted) }));
  view.append(element("p", { className: "meta",
    textContent: (top * 100).toFixed(1) + "% sure · answered by version " + (one.version ?? "?") +
                 " · " + one.ms.toFixed(1) + " ms at the server, " + roundTrip.toFixed(0) + " ms round trip" }));
  const bars = element("ol", { className: "bars" });
  bars.setAttribute("aria-label", "Probability of each digit");
  one.probabilities.forEach((p, digit) => {
    const fill = element("div", { className: "fill" });
    fill.style.width = (100 * p).toFixed(1) + "%";
    const row = element("li", { className: digit === one.predicted ? "top" : "" }, [
      element("span", { textContent: String(digit) }),
      element("div", { className: "track" }, [fill]),
      element("span", { textContent: (100 * p).toFixed(1) + "%" }),
    ]);
    row.setAttribute("aria-label", "digit " + digit + ": " + (100 * p).toFixed(1) + " percent");
    bars.append(row);
  });
  view.append(bars);
  return view;
}

// -- versions and the live panel ----------------------------------------------------------------
function fillPicks(versions) {
  const choices = [["latest", "latest version"]];
  const labels = new Set();
  for (const v of versions) {
    choices.push(["v" + v.version, "version " + v.version + (v.labels.length ? " (" + v.labels.join(", ") + ")" : "")]);
    for (const l of v.labels) labels.add(l);
  }
  for (const l of [...labels].sort()) choices.push([l, "label " + l]);
  for (const [id, none] of [["pick1", null], ["pick2", "(none)"]]) {
    const select = $(id);
    const keep = select.value;
    const options = (none ? [["", none]] : []).concat(choices);
    const signature = options.map((o) => o.join("=")).join("|");
    if (select.dataset.signature === signature) continue;
    select.replaceChildren(...options.map(([value, text]) => element("option", { value: value, textContent: text })));
    select.dataset.signature = signature;
    if (options.some((o) => o[0] === keep)) select.value = keep;
  }
}

function banner(text) {
  const node = $("banner");
  node.hidden = !text;
  node.textContent = text || "";
}

function fmt(value, unit) { return value == null ? "–" : value + (unit || ""); }

function showLive(live) {
  if (!live.server.ok) {
    banner("The model server does not answer: " + live.server.message + "." +
           (live.server.hint ? " Hint: " + live.server.hint : ""));
  } else {
    banner("");
  }
  const m = live.metrics;
  if (m.available) {
    $("metrics-note").textContent = "From the server's Prometheus page; percentiles over " + m.percentiles_over + ".";
    $("rps").textContent = m.requests_per_s.toFixed(1);
    $("rps").dataset.value = m.requests_per_s;
    $("rps").dataset.total = m.requests_total;
    $("p50").textContent = fmt(m.p50_ms, " ms");
    $("p99").textContent = fmt(m.p99_ms, " ms");
    $("errors").textContent = m.errors_total + (m.errors_per_s ? " (" + m.errors_per_s + "/s)" : "");
  } else {
    $("metrics-note").textContent = m.message;
    for (const id of ["rps", "p50", "p99", "errors"]) $(id).textContent = "–";
    $("rps").dataset.value = "";
  }
  const rows = live.versions.map((v) => element("tr", {}, [
    element("td", { textContent: String(v.version) }),
    element("td", { textContent: v.state + (v.error ? " (" + v.error + ")" : "") }),
    element("td", { textContent: v.labels.join(", ") || "–" }),
  ]));
  if (!live.server.ok) rows.push(element("tr", {}, [element("td", { colSpan: 3, textContent: "unknown: the server does not answer" })]));
  $("versions").replaceChildren(...rows);
  if (live.versions.length) fillPicks(live.versions);
  const moves = live.history.map((h) => element("li", {
    textContent: h.time.replace("T", " ").slice(0, 19) + " " + h.label + ": " + (h.from ?? "–") + " → " + h.to + " (" + h.action + ", " + h.by + ")" }));
  $("history").replaceChildren(...(moves.length ? moves : [element("li", { textContent: "none yet" })]));
}

async function poll() {
  try {
    const response = await fetch("/api/live");
    showLive(await response.json());
  } catch (error) {
    banner("The ui app does not answer (" + error + "): is `mlserve ui` still running?");
  }
  setTimeout(poll, 1500);
}

async function start() {
  clearPad();
  try {
    const info = await (await fetch("/api/info")).json();
    $("target").textContent = "Model '" + info.model + "' at " + info.url +
      (info.grpc_server ? " (predict over gRPC " + info.grpc_server + ")" : "");
    maxUpload = info.max_upload;
    fillPicks(info.versions);
  } catch (error) {
    banner("The ui app does not answer (" + error + ")");
  }
  poll();
}

start();
