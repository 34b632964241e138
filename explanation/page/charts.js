// Inline SVG and canvas charts for the live page: bars of Z and A, the sigmoid, patch grids.
// Plain DOM, nothing fetched; cat orange, dog blue.
"use strict";

const CAT_COLOUR = "#e0662f", DOG_COLOUR = "#2f6fe0", OFF_COLOUR = "#b8bec8";
const SVG_NS = "http://www.w3.org/2000/svg";
const BARS_MAX = 1024;  // wider layers: neighbouring units averaged, so every bar stays visible

function svgElement(name, attributes) {
  const element = document.createElementNS(SVG_NS, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
  return element;
}

// One bar per unit (positive up, negative down); a click reports the unit under the pointer.
function drawBars(svg, values, options) {
  const { off = new Set(), selected = null, onClick = null } = options || {};
  svg.replaceChildren();
  const group = values.length > BARS_MAX ? 2 : 1;
  const shown = [];
  for (let i = 0; i < values.length; i += group) {
    const part = values.slice(i, i + group);
    shown.push(part.reduce((sum, v) => sum + v, 0) / part.length);
  }
  const width = 1000, height = 70;
  const scale = Math.max(1e-12, ...shown.map(Math.abs));
  const hasNegative = shown.some((v) => v < 0);
  const base = hasNegative ? height / 2 : height, span = hasNegative ? height / 2 : height;
  const step = width / shown.length;
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("preserveAspectRatio", "none");
  shown.forEach((value, k) => {
    const bar = (Math.abs(value) / scale) * span;
    const unit = k * group;
    let fill = value >= 0 ? CAT_COLOUR : DOG_COLOUR;
    if (off.has(unit)) fill = OFF_COLOUR;
    svg.appendChild(svgElement("rect", {
      x: (k * step).toFixed(2), y: (value >= 0 ? base - bar : base).toFixed(2),
      width: Math.max(step * 0.8, 0.6).toFixed(2), height: Math.max(bar, 0.5).toFixed(2), fill,
    }));
  });
  svg.appendChild(svgElement("line", { x1: 0, x2: width, y1: base, y2: base, stroke: "#9aa3b0" }));
  if (selected !== null && selected < values.length) {
    const x = (Math.floor(selected / group) + 0.4) * step;
    svg.appendChild(svgElement("line", { x1: x, x2: x, y1: 0, y2: height, stroke: "#1d2430",
      "stroke-width": Math.max(2, step * 0.3), "stroke-opacity": 0.35 }));
  }
  svg.onclick = onClick && ((event) => {
    const box = svg.getBoundingClientRect();
    const k = Math.floor(((event.clientX - box.left) / box.width) * shown.length);
    onClick(Math.min(values.length - 1, Math.max(0, k * group)));
  });
}

// p = sigmoid(z), the threshold, and this photo's point (z, p_cat).
function drawSigmoid(svg, z, pCat, threshold) {
  svg.replaceChildren();
  const width = 420, height = 200, pad = 20;
  const reach = Math.max(6, Math.ceil(Math.abs(z)) + 1);
  const point = (zz, p) => [pad + ((zz + reach) / (2 * reach)) * (width - 2 * pad), pad + (1 - p) * (height - 2 * pad)];
  const curve = [];
  for (let i = 0; i <= 120; i++) {
    const zz = reach * ((2 * i) / 120 - 1);
    curve.push(point(zz, 1 / (1 + Math.exp(-zz))).map((v) => v.toFixed(1)).join(","));
  }
  const [x0, yThreshold] = point(0, threshold);
  const [px, py] = point(z, pCat);
  const colour = pCat >= threshold ? CAT_COLOUR : DOG_COLOUR;
  const text = (x, y, content, extra) => {
    const element = svgElement("text", { x, y, fill: "#5b6472", "font-size": 12, ...extra });
    element.textContent = content;
    svg.appendChild(element);
  };
  svg.appendChild(svgElement("line", { x1: pad, x2: width - pad, y1: yThreshold, y2: yThreshold,
    stroke: "#9aa3b0", "stroke-dasharray": "4 3" }));
  svg.appendChild(svgElement("line", { x1: x0, x2: x0, y1: pad, y2: height - pad, stroke: "#d5d9e0" }));
  svg.appendChild(svgElement("polyline", { points: curve.join(" "), fill: "none", stroke: "#1d2430",
    "stroke-width": 2 }));
  svg.appendChild(svgElement("line", { x1: px, x2: px, y1: py, y2: height - pad, stroke: colour,
    "stroke-dasharray": "3 3" }));
  svg.appendChild(svgElement("circle", { cx: px, cy: py, r: 6, fill: colour }));
  // The threshold's label on the side away from the photo's point, so the two never overlap.
  const right = px < width / 2;
  text(right ? width - pad : pad, yThreshold - 5, `threshold ${threshold}`, { "text-anchor": right ? "end" : "start" });
  text(Math.min(px + 9, width - 150), py + 18, `z = ${z.toFixed(3)}, p_cat = ${pCat.toFixed(3)}`, { fill: colour });
  text(pad, height - 4, `z = ${-reach}`);
  text(width - pad, height - 4, `z = ${reach}`, { "text-anchor": "end" });
}

// A square grid of numbers (a unit's A over the patches, or a token-mixing W row) as a heat
// map: orange for positive, blue for negative, white for 0, scaled by the largest |value|.
function drawGrid(canvas, grid, side) {
  const n = grid.length;
  canvas.width = canvas.height = side;
  const context = canvas.getContext("2d");
  const scale = Math.max(1e-12, ...grid.flat().map(Math.abs));
  const cell = side / n;
  grid.forEach((row, r) => row.forEach((value, c) => {
    const t = Math.min(1, Math.abs(value) / scale);
    const [red, green, blue] = value >= 0 ? [224, 102, 47] : [47, 111, 224];
    const mix = (channel) => Math.round(255 + (channel - 255) * t);
    context.fillStyle = `rgb(${mix(red)}, ${mix(green)}, ${mix(blue)})`;
    context.fillRect(c * cell, r * cell, Math.ceil(cell), Math.ceil(cell));
  }));
}
