// The live page: upload or pick a photo, ask the server for every layer's Z and A (from the
// model's own forward_with_intermediates), draw them, and re-ask whenever the network changes.
"use strict";

const state = {
  model: null,
  photo: null,  // the server's id of the current photo: an upload, or a sample "s<k>"
  ablation: { units_off: {}, zero_bias: [], weight_scale: {}, flip: false },
  selected: null,  // { layer, unit } whose panel is open
  cards: new Map(),  // layer name -> its card's elements
  updates: 0,
  asked: 0,  // answers to older questions are dropped: a slider dragged fast asks many
};

const $ = (id) => document.getElementById(id);

async function api(path, body, raw) {
  if (window.EMBEDDED) return embeddedAnswer(path, body);
  const options = body === undefined ? {} : {
    method: "POST",
    body: raw ? body : JSON.stringify(body),
    headers: raw ? { "Content-Type": "application/octet-stream", "X-File-Name": raw } : { "Content-Type": "application/json" },
  };
  const response = await fetch(path, options);
  const data = await response.json().catch(() => ({ error: `the server answered ${response.status}` }));
  if (!response.ok) throw new Error(data.error || `the server answered ${response.status}`);
  return data;
}

// explain.py --html: the server's answers for one photo, written into the page; nothing is fetched.
function embeddedAnswer(path, body) {
  const asTrained = { units_off: {}, zero_bias: [], weight_scale: {}, flip: false };
  const changed = body && JSON.stringify(body.ablation) !== JSON.stringify(asTrained);
  const answer = path === "/api/model" ? EMBEDDED.model
    : changed ? null
    : path === "/api/explain" ? EMBEDDED.explanation
    : EMBEDDED.units[`${body.layer}/${body.unit}`];
  if (!answer) throw new Error("this page holds the numbers of one photo and its strongest units; "
    + "for the rest, and to change the network, run explain.py --serve");
  return answer;
}

function showMessage(text) {
  const message = $("message");
  message.textContent = text || "";
  message.hidden = !text;
}

async function start() {
  state.model = await api("/api/model");
  $("network").textContent = `network ${state.model.network}, ${state.model.layers.length} layers`;
  $("image-size").textContent = `${state.model.image_size}×${state.model.image_size}`;
  if (window.EMBEDDED) {
    document.body.classList.add("embedded");  // no server: hide what would ask one
    await choosePhoto("embedded");
  } else if (state.model.samples.length) {
    $("samples-card").hidden = false;
    for (const sample of state.model.samples) {
      const button = document.createElement("button");
      button.type = "button";
      button.title = sample.mistake ? `${sample.name} (${sample.mistake})` : sample.name;
      button.dataset.photo = sample.id;
      button.appendChild(image(sample.thumb, sample.mistake ? 64 : 40));
      button.onclick = () => choosePhoto(sample.id);
      if (sample.mistake) {  // the network's surest mistakes on these photos, with its call
        const caption = document.createElement("span");
        caption.className = "mistake";
        caption.textContent = sample.mistake;
        button.appendChild(caption);
        $("mistakes-title").hidden = false;
      }
      $(sample.mistake ? "mistakes" : "samples").appendChild(button);
    }
    await choosePhoto(state.model.samples[0].id);
  } else {
    showMessage("Drop a photo on the box above, or pick one, to see the network explain it.");
  }
}

async function choosePhoto(id) {
  state.photo = id;
  for (const button of document.querySelectorAll("#samples-card button")) {
    button.classList.toggle("current", button.dataset.photo === id);
  }
  await refresh();
}

async function upload(file) {
  if (!file) return;
  if (file.size > state.model.max_upload_bytes) {
    showMessage(`${file.name} is ${(file.size / 2 ** 20).toFixed(1)} MiB; the server takes photos up to ${state.model.max_upload_bytes / 2 ** 20} MiB`);
    return;
  }
  try {
    const answer = await api("/api/photos", file, encodeURIComponent(file.name).slice(0, 200));
    await choosePhoto(answer.photo);
  } catch (error) {
    showMessage(error.message);
  }
}

// Everything on the page follows from (photo, ablation): ask again, draw again.
async function refresh() {
  if (!state.photo) return;
  const ticket = ++state.asked;
  let data;
  try {
    data = await api("/api/explain", { photo: state.photo, ablation: state.ablation });
  } catch (error) {
    if (ticket === state.asked) showMessage(error.message);
    return;
  }
  if (ticket !== state.asked) return;
  showMessage("");
  drawExplanation(data);
  if (state.selected) await openUnit(state.selected.layer, state.selected.unit);
  state.updates += 1;
  $("p-cat").dataset.updates = state.updates;  // tells a watching test the page is drawn
}

function drawExplanation(data) {
  $("label").textContent = data.label;
  $("label").className = data.label;
  $("x-image").src = data.x_image;
  const verdict = $("p-cat");
  verdict.textContent = `${data.label}: p_cat = ${data.p_cat.toFixed(6)}`;
  verdict.className = `verdict ${data.label}`;
  verdict.dataset.pCat = data.p_cat;
  $("decision").textContent = `p_cat = sigmoid(z) = sigmoid(${data.z.toFixed(4)}): ${data.decision}`;
  $("flip-average").textContent = data.flip_average || "";
  $("normalisation").textContent = `x: ${data.normalisation}`;
  drawSigmoid($("sigmoid"), data.z, data.p_cat, data.threshold);
  data.layers.forEach((layer) => drawLayer(layer, data));
  describeChanges();
}

function drawLayer(layer, data) {
  let card = state.cards.get(layer.name);
  if (!card) card = buildCard(layer);
  const output = layer.kind === "output";
  card.title.textContent = output ? `Output · ${layer.name}: one unit, one number z ` : `Layer ${layer.index} · ${layer.name} `;
  const small = document.createElement("small");
  small.textContent = layer.kind_words;
  card.title.appendChild(small);
  card.formula.textContent = output ? `${layer.formula} = ${data.z_photo.toFixed(4)}` : layer.formula;
  const stats = layer.z_stats;
  let active = `A = ${layer.normalised ? `${layer.activation}(norm(Z))` : `${layer.activation}(Z)`}`;
  if (layer.activation === "identity") active = "A = Z: no non-linearity";
  else if (layer.active !== null) active += `: ${layer.active} of ${layer.units} units on (${layer.active_when})`;
  card.stats.textContent = output
    ? `x is ${layer.x_words}. z adds up ${layer.weight_shape[1]} terms w_j·x_j: ${signed(data.terms_towards_cat)} towards cat, `
      + `${signed(data.terms_towards_dog)} towards dog, and b = ${formatNumber(data.bias)}. Click the output unit for its largest terms.`
    : `x is ${layer.x_words}. Z: min ${formatNumber(stats.min)} · max ${formatNumber(stats.max)} · `
      + `mean ${formatNumber(stats.mean)} · std ${formatNumber(stats.std)}. ${active}.`;
  const off = new Set(state.ablation.units_off[layer.name] || []);
  const selected = state.selected && state.selected.layer === layer.name ? state.selected.unit : null;
  const pick = (unit) => openUnit(layer.name, unit);
  if (output) {
    card.charts.hidden = true;
  } else {
    drawBars(card.zBars, layer.z_per_unit, { off, selected, onClick: pick });
    drawBars(card.aBars, layer.a_per_unit, { off, selected, onClick: pick });
  }
  card.top.replaceChildren();
  const units = output ? [{ index: [0], a: data.p_cat }] : layer.top_units;
  card.top.append(output ? "the output unit: " : "largest A: ");
  for (const unit of units) {
    const number = unit.index[unit.index.length - 1];
    const button = document.createElement("button");
    button.type = "button";
    button.className = "unit-button" + (off.has(number) ? " off" : "");
    button.dataset.layer = layer.name;
    button.dataset.unit = number;
    // A per-patch layer lists (row, unit) pairs: the same unit can be strongest in several rows.
    const row = unit.index.length > 1 ? ` · ${layer.kind === "token_mixing" ? "feature" : "patch"} ${unit.index[0]}` : "";
    button.textContent = `#${number}${row} (${formatNumber(unit.a)})`;
    button.onclick = () => pick(number);
    card.top.appendChild(button);
  }
}

function buildCard(layer) {
  const root = document.createElement("section");
  root.className = "card layer";
  root.dataset.layer = layer.name;
  const card = { root, title: document.createElement("h2"), formula: document.createElement("div"),
    stats: document.createElement("p"), charts: document.createElement("div"), top: document.createElement("div"),
    controls: document.createElement("div"), unit: document.createElement("div") };
  card.formula.className = "formula";
  card.stats.className = "stats";
  card.charts.className = "charts";
  card.top.className = "stats";
  card.controls.className = "controls";
  [card.zBars, card.aBars] = ["Z = W x + b of each unit", "A = g(Z) of each unit"].map((caption) => {
    const figureElement = document.createElement("figure");
    const svg = document.createElementNS(SVG_NS, "svg");
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", caption);
    const text = document.createElement("figcaption");
    text.textContent = layer.rows === null ? caption : `${caption} (mean over the ${layer.rows} rows)`;
    figureElement.append(svg, text);
    card.charts.appendChild(figureElement);
    return svg;
  });
  const zeroBias = document.createElement("label");
  const check = document.createElement("input");
  check.type = "checkbox";
  check.className = "zero-bias";
  check.onchange = () => {
    const names = new Set(state.ablation.zero_bias);
    check.checked ? names.add(layer.name) : names.delete(layer.name);
    state.ablation.zero_bias = [...names];
    refresh();
  };
  zeroBias.append(check, ` zero b (${layer.bias_shape.join("×")})`);
  const scale = document.createElement("label");
  const slider = document.createElement("input");
  Object.assign(slider, { type: "range", min: "-1", max: "2", step: "0.05", value: "1", className: "scale" });
  const shown = document.createElement("output");
  shown.textContent = "1.00";
  slider.oninput = () => { shown.textContent = Number(slider.value).toFixed(2); };
  slider.onchange = () => {
    const value = Number(slider.value);
    if (value === 1) delete state.ablation.weight_scale[layer.name];
    else state.ablation.weight_scale[layer.name] = value;
    refresh();
  };
  scale.append(`scale W (${layer.weight_shape.join("×")}) by `, slider, " ", shown);
  card.controls.append(zeroBias, scale);
  card.check = check;
  card.slider = slider;
  card.shown = shown;
  root.append(card.title, card.formula, card.stats, card.charts, card.top, card.controls, card.unit);
  $("layers").appendChild(root);
  state.cards.set(layer.name, card);
  return card;
}

async function openUnit(layerName, unit) {
  state.selected = { layer: layerName, unit };
  for (const [name, card] of state.cards) if (name !== layerName) card.unit.replaceChildren();
  try {
    const data = await api("/api/unit", { photo: state.photo, ablation: state.ablation, layer: layerName, unit });
    const layer = state.model.layers.find((entry) => entry.name === layerName);
    renderUnit(state.cards.get(layerName).unit, data, layer, { toggle: toggleUnit, pickSample: choosePhoto });
  } catch (error) {
    showMessage(error.message);
  }
}

function toggleUnit(layer, unit) {
  const units = new Set(state.ablation.units_off[layer] || []);
  units.has(unit) ? units.delete(unit) : units.add(unit);
  if (units.size) state.ablation.units_off[layer] = [...units].sort((a, b) => a - b);
  else delete state.ablation.units_off[layer];
  refresh();
}

function describeChanges() {
  const parts = [];
  for (const [layer, units] of Object.entries(state.ablation.units_off)) parts.push(`${layer}: units ${units.map((u) => `#${u}`).join(", ")} off`);
  for (const layer of state.ablation.zero_bias) parts.push(`${layer}: b = 0`);
  for (const [layer, scale] of Object.entries(state.ablation.weight_scale)) parts.push(`${layer}: W × ${scale}`);
  if (state.ablation.flip) parts.push("photo flipped");
  $("changes").textContent = parts.length ? `changed: ${parts.join("; ")}` : "the network as trained";
}

function reset() {
  state.ablation = { units_off: {}, zero_bias: [], weight_scale: {}, flip: false };
  $("flip").checked = false;
  for (const card of state.cards.values()) {
    card.check.checked = false;
    card.slider.value = "1";
    card.shown.textContent = "1.00";
  }
  refresh();
}

$("file").onchange = (event) => upload(event.target.files[0]);
$("flip").onchange = (event) => { state.ablation.flip = event.target.checked; refresh(); };
$("reset").onclick = reset;
const drop = $("drop");
drop.ondragover = (event) => { event.preventDefault(); drop.classList.add("over"); };
drop.ondragleave = () => drop.classList.remove("over");
drop.ondrop = (event) => { event.preventDefault(); drop.classList.remove("over"); upload(event.dataTransfer.files[0]); };
start().catch((error) => showMessage(error.message));
