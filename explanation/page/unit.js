// The panel of one clicked unit: how its Z = sum_j w_j x_j + b is made for this photo,
// its weight row as a picture, and the sample photos that switch it on most.
"use strict";

const TEMPLATE_CAPTION = "its row of W as a picture: bright = large positive weight, dark = negative;"
  + " Z is large when x looks like this";

function formatNumber(value) {
  return Number(value).toPrecision(4).replace(/\.?0+(e|$)/, "$1");
}

function signed(value) {
  return (value >= 0 ? "+" : "") + Number(value).toFixed(4);
}

function cell(parent, text, className) {
  const element = document.createElement("span");
  element.textContent = text;
  if (className) element.className = className;
  parent.appendChild(element);
  return element;
}

// data: the /api/unit answer; actions: { toggle(layer, unit), pickSample(id) }.
function renderUnit(container, data, layer, actions) {
  const panel = document.getElementById("unit-template").content.firstElementChild.cloneNode(true);
  const where = data.rows === null ? "" : ` · shown for ${data.row_name} ${data.row} of ${data.rows}, where its A is largest`;
  panel.querySelector(".unit-title").textContent = `Unit #${data.unit} of ${data.layer}${where}`;
  const isOutput = data.output;  // the output layer: one z, and its A is p_cat
  const zName = isOutput ? "z" : "Z";
  panel.querySelector(".unit-formula").textContent =
    `${zName} = Σ w_j·x_j + b = ${signed(data.terms_up)} ${signed(data.terms_down)} + (${formatNumber(data.bias)})`
    + ` = ${formatNumber(data.z)}   over ${data.in_features} terms;  A = ${formatNumber(data.a)}`
    + (data.switched_off ? "  (switched off: A = 0)" : "");

  const button = panel.querySelector(".switch");
  if (layer.switchable) {
    button.textContent = data.switched_off ? "switch this unit back on" : "switch this unit off (A = 0)";
    button.dataset.layer = data.layer;
    button.dataset.unit = data.unit;
    button.onclick = () => actions.toggle(data.layer, data.unit);
  } else {
    button.remove();
  }

  const terms = panel.querySelector(".terms");
  for (const title of ["j", "w_j", "x_j", "w_j·x_j", ""]) cell(terms, title, "heading");
  const largest = Math.max(1e-12, ...data.terms.map((t) => Math.abs(t.term)));
  for (const term of data.terms) {
    cell(terms, `#${term.j}`);
    cell(terms, formatNumber(term.weight));
    cell(terms, formatNumber(term.x));
    const holder = cell(terms, "");
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.style.width = `${((Math.abs(term.term) / largest) * 100).toFixed(1)}%`;
    bar.style.background = term.term > 0 ? CAT_COLOUR : DOG_COLOUR;
    holder.appendChild(bar);
    cell(terms, signed(term.term));
  }
  cell(terms, "b"); cell(terms, ""); cell(terms, ""); cell(terms, ""); cell(terms, signed(data.bias));

  const pictures = panel.querySelector(".pictures");
  if (data.template) figure(pictures, image(data.template, 128), TEMPLATE_CAPTION);
  if (data.a_grid) {
    const canvas = document.createElement("canvas");
    drawGrid(canvas, data.a_grid, 128);
    figure(pictures, canvas, `this unit's A in each of the ${data.rows} patches (the same W at every patch)`);
  }
  if (data.weight_grid) {
    const canvas = document.createElement("canvas");
    drawGrid(canvas, data.weight_grid, 128);
    figure(pictures, canvas, "its row of the token-mixing W, one weight per patch: which patches it mixes");
  }

  const samples = panel.querySelector(".unit-samples");
  if (data.samples.length) {
    cell(samples, "Sample photos that switch it on most (the network as trained):", "stats");
    const strip = document.createElement("div");
    strip.className = "thumbs";
    for (const sample of data.samples) {
      const item = document.createElement("figure");
      const pick = document.createElement("button");
      pick.type = "button";
      pick.title = sample.name;
      pick.appendChild(image(sample.thumb, 64));
      pick.onclick = () => actions.pickSample(sample.id);
      item.appendChild(pick);
      cell(item, `A = ${formatNumber(sample.a)}`);
      strip.appendChild(item);
    }
    samples.appendChild(strip);
  }
  container.replaceChildren(panel);
}

function image(source, side) {
  const element = document.createElement("img");
  element.src = source;
  element.width = element.height = side;
  element.alt = "";
  return element;
}

function figure(parent, content, caption) {
  const element = document.createElement("figure");
  element.appendChild(content);
  const text = document.createElement("figcaption");
  text.textContent = caption;
  element.appendChild(text);
  parent.appendChild(element);
}
