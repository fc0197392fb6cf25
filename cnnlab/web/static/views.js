// The formula view of each kind of layer, drawn from one POST /api/formula answer: the model's own numbers, the
// slide's idea made visible (a ReLU zeroing a negative, a pooling window on the map it reads, a flatten's source,
// what makes a fully connected unit's value, a kernel sliding over the real input), and, last, the formula's
// result beside the value the model computed (the tests read both).

import { floatsOf } from "./api.js";
import { colourFor, context2d, el, enlarged, flat, fmt, inkOn, outline, range, scaleFor } from "./paint.js";

const reducedMotion = window.matchMedia("(prefers-reduced-motion: reduce)").matches;
const op = (text) => el("span", "op", text);

// The last line of every view: the formula's result and the model's value, side by side.
function resultLine(answer, text) {
  const line = el("p", "total", `${text} = ${fmt(answer.result)}; the model computed ${fmt(answer.actual)}.`);
  line.id = "formula-result";
  line.dataset.result = answer.result;
  line.dataset.actual = answer.actual;
  return line;
}

// Numbers in cells coloured as the maps are (`low`..`high`: the map's own scale), legible at any size.
function numberGrid(rows, low, high, marks = [], digits = 2) {
  const grid = el("div", "grid");
  grid.style.gridTemplateColumns = `repeat(${rows[0].length}, auto)`;
  rows.forEach((row, r) => row.forEach((value, c) => {
    const cell = el("span", value === null ? "pad" : "", value === null ? "pad" : value.toFixed(digits));
    if (value !== null) {
      const colour = colourFor(value, low, high);
      cell.style.background = `rgb(${colour.join(",")})`;
      cell.style.color = inkOn(colour);
    }
    if (marks.some(([mr, mc]) => mr === r && mc === c)) cell.classList.add("marked");
    cell.title = value === null ? "zero padding: outside the input" : String(value);
    grid.append(cell);
  }));
  return grid;
}

function table(headers, rows, marked = -1) {
  const t = el("table", "terms");
  const head = t.createTHead().insertRow();
  headers.forEach((h) => head.append(el("th", "", h)));
  const body = t.createTBody();
  rows.forEach((cells, i) => {
    const row = body.insertRow();
    if (i === marked) row.className = "marked";
    cells.forEach((c) => row.append(el("td", "", c)));
  });
  return t;
}

// A map of the view (float values), enlarged, with cells outlined: [[row, column, colour]], and a caption.
function mapFigure(values, height, width, caption, marks = [], { low, high, target = 220, onPick } = {}) {
  const [lo, hi] = low === undefined ? range(values) : [low, high];
  const figure = el("figure", "view-map");
  const canvas = document.createElement("canvas");
  const scale = scaleFor(height, width, target);
  const context = enlarged(canvas, values, height, width, Math.min(lo, lo < 0 ? lo : 0), hi, scale);
  for (const [r, c, colour, h = 1, w = 1] of marks) outline(context, r * scale, c * scale, h * scale, w * scale, colour);
  canvas.setAttribute("role", "img");
  canvas.setAttribute("aria-label", caption);
  if (onPick) {
    canvas.classList.add("pickable");
    canvas.addEventListener("click", (event) => {
      const box = canvas.getBoundingClientRect();
      onPick(Math.min(height - 1, Math.floor(((event.clientY - box.top) / box.height) * height)),
        Math.min(width - 1, Math.floor(((event.clientX - box.left) / box.width) * width)));
    });
  }
  figure.append(canvas, el("figcaption", "", caption));
  return figure;
}

const mapOf = (packed) => packed && { values: floatsOf(packed), height: packed.shape.at(-2), width: packed.shape.at(-1) };

// ---- activation: f applied to each value; the map before and after, and the function's plot -------------------
function drawActivation(a, view) {
  const [, y, x] = a.index.length === 3 ? a.index : [0, 0, 0];
  const parts = [el("p", "formula", `f(x) = ${a.formula}` + (a.slope !== null ? `, with a = ${fmt(a.slope)}` : "") +
    ` · here x = ${fmt(a.x)} (the layer's input), so f(${fmt(a.x, 3)}) = ${fmt(a.result)}` +
    (a.function === "ReLU" && a.x < 0 ? ": a negative value becomes 0." : "."))];
  const before = mapOf(a.maps?.before);
  const after = mapOf(a.maps?.after);
  if (before && after) {
    const negatives = before.values.filter((v) => v < 0).length;
    const [low, high] = range(before.values);
    const row = el("div", "pair");
    const mark = [[y, x, "#fde047"]];
    row.append(
      mapFigure(before.values, before.height, before.width, `before: x (${negatives} of ${before.values.length} values negative, in blue)`,
        mark, { low, high, onPick: view.pick }),
      op("f →"),
      mapFigure(after.values, after.height, after.width, a.function === "ReLU"
        ? `after: max(0, x) (the ${negatives} negatives are now 0, black)` : "after: f(x)", mark,
      { onPick: view.pick }));
    parts.push(row);
    parts.at(-1).dataset.negatives = negatives;
    parts.at(-1).dataset.zeroed = after.values.filter((v, i) => before.values[i] < 0 && v === 0).length;
    if (!(low < 0)) parts.push(el("p", "note", "This map has no negative input: every value passes unchanged."));
  }
  parts.push(plot(a), resultLine(a, `f(${fmt(a.x)})`));
  return parts;
}

// The function over the range of the map's input, with the chosen x and f(x) marked.
function plot(a) {
  const canvas = el("canvas", "plot");
  const [width, height, pad] = [300, 180, 28];
  canvas.width = width;
  canvas.height = height;
  const xs = a.curve.x, ys = a.curve.y;
  const [xl, xh] = range(xs);
  const [yl, yh] = range([...ys, 0, a.result]);
  const X = (v) => pad + ((v - xl) / (xh - xl || 1)) * (width - 2 * pad);
  const Y = (v) => height - pad - ((v - yl) / (yh - yl || 1)) * (height - 2 * pad);
  const c = context2d(canvas);
  c.fillStyle = "#fff";
  c.fillRect(0, 0, width, height);
  c.strokeStyle = "#9aa3b2";
  c.lineWidth = 1;
  c.beginPath(); c.moveTo(X(xl), Y(0)); c.lineTo(X(xh), Y(0)); c.moveTo(X(0), Y(yl)); c.lineTo(X(0), Y(yh)); c.stroke();
  c.strokeStyle = "#1f6feb";
  c.lineWidth = 2.5;
  c.beginPath();
  xs.forEach((v, i) => (i ? c.lineTo(X(v), Y(ys[i])) : c.moveTo(X(v), Y(ys[i]))));
  c.stroke();
  c.setLineDash([4, 3]);
  c.strokeStyle = "#5b6475";
  c.lineWidth = 1;
  c.beginPath(); c.moveTo(X(a.x), Y(0)); c.lineTo(X(a.x), Y(a.result)); c.lineTo(X(0), Y(a.result)); c.stroke();
  c.setLineDash([]);
  c.fillStyle = "#c0392b";
  c.beginPath(); c.arc(X(a.x), Y(a.result), 6, 0, 2 * Math.PI); c.fill();
  c.fillStyle = "#1d2330";
  c.font = "13px system-ui, sans-serif";
  c.fillText(`x = ${a.x.toFixed(2)}`, Math.min(width - 80, Math.max(2, X(a.x) - 30)), height - 8);
  c.fillText(`f(x) = ${a.result.toFixed(2)}`, 4, Math.max(14, Y(a.result) - 8));
  c.fillText(a.function, width - 80, 16);
  canvas.setAttribute("role", "img");
  canvas.setAttribute("aria-label", `plot of f(x) = ${a.formula} for x from ${fmt(xl, 2)} to ${fmt(xh, 2)}; ` +
    `the marked point is x = ${fmt(a.x)}, f(x) = ${fmt(a.result)}`);
  canvas.dataset.x = a.x;
  canvas.dataset.fx = a.result;
  return canvas;
}

// ---- pooling: the window on the map it reads, the value it keeps, the output cell it makes --------------------
function drawPool(a, view) {
  const real = flat(a.window).filter((v) => v !== null);
  const marks = [];
  if (a.op === "max") a.window.forEach((row, r) => row.forEach((v, c) => { if (v === a.result) marks.push([r, c]); }));
  const rows = a.rows.filter((r) => r !== null);
  const cols = a.cols.filter((c) => c !== null);
  const formula = {
    max: "the largest value of the window",
    avg: `the window's sum / ${a.divisor}`,
    sum: a.weight !== undefined ? `the window's sum × ${fmt(a.weight)} + ${fmt(a.bias)} (trained coefficient and bias)` : "the window's sum",
  }[a.op];
  const sum = real.reduce((s, v) => s + v, 0);
  const parts = [el("p", "formula", `${a.op} pooling: ${formula}. Window: rows ${rows[0]}–${rows.at(-1)}, columns ` +
    `${cols[0]}–${cols.at(-1)} of the map before it` + (real.length < a.rows.length * a.cols.length ? " (“pad”: outside it)." : "."))];
  const before = mapOf(a.maps?.before);
  const after = mapOf(a.maps?.after);
  if (before && after) {
    const [low, high] = range([...before.values, ...after.values]);
    const window = [rows[0], cols[0], "#fde047", rows.at(-1) - rows[0] + 1, cols.at(-1) - cols[0] + 1];
    const kept = marks.map(([r, c]) => [a.rows[r], a.cols[c], "#f97316"]);
    const pair = el("div", "pair");
    pair.append(
      mapFigure(before.values, before.height, before.width, `the map before (${before.height}×${before.width}): the window, ` +
        (a.op === "max" ? "its largest value in orange" : "every value in it"), [window, ...kept], { low, high }),
      op(a.op === "max" ? "max →" : a.op === "avg" ? "mean →" : "sum →"),
      mapFigure(after.values, after.height, after.width, `the pooled map (${after.height}×${after.width}): the cell it makes`,
        [[a.index[1], a.index[2], "#fde047"]], { low, high, onPick: view.pick }));
    pair.dataset.window = [rows[0], rows.at(-1) + 1, cols[0], cols.at(-1) + 1].join(",");
    parts.push(pair);
  }
  const [low, high] = before ? range(before.values) : range(real);
  parts.push(numberGrid(a.window, Math.min(low, 0), high, marks),
    resultLine(a, a.op === "max" ? "max" : a.op === "avg" ? `${fmt(sum)} / ${a.divisor}` : a.weight !== undefined
      ? `${fmt(sum)} × ${fmt(a.weight)} + ${fmt(a.bias)}` : "Σ"));
  return parts;
}

// ---- flatten: where the value comes from ---------------------------------------------------------------------
function drawFlatten(a) {
  const [map, row, column] = a.from;
  const [, height, width] = a.from_shape.length === 3 ? a.from_shape : [1, 1, a.from_shape[0]];
  const parts = [el("p", "formula", `Value ${a.index[0]} is map ${map}, row ${row}, column ${column} of the ` +
    `${a.from_shape.join("×")} maps before it: the maps are laid end to end, row by row, so index = (map × ${height} + row) × ` +
    `${width} + column = (${map} × ${height} + ${row}) × ${width} + ${column} = ${a.index[0]}.`)];
  const before = mapOf(a.maps?.before);
  if (before) {
    const figure = mapFigure(before.values, before.height, before.width, `map ${map} before the flatten: row ${row}, column ${column}`,
      [[row, column, "#fde047"]]);
    figure.dataset.source = a.from.join(",");
    parts.push(figure);
  }
  parts.push(resultLine(a, "its value"));
  return parts;
}

// ---- fully connected: what makes y, with nothing hidden -----------------------------------------------------
function bars(items, scale) {
  const list = el("div", "bars");
  for (const { label, value, note } of items) {
    const row = el("div", "bar-row");
    const bar = el("span", `bar ${value >= 0 ? "pos" : "neg"}`);
    bar.style.width = `${Math.max(1, (100 * Math.abs(value)) / (scale || 1))}%`;
    const track = el("span", "track");
    track.append(bar);
    row.append(el("span", "label", label), track, el("span", "value", `${value >= 0 ? "+" : "−"}${fmt(Math.abs(value), 3)}`));
    if (note) row.title = note;
    row.dataset.value = value;
    list.append(row);
  }
  return list;
}

function drawLinear(a) {
  const listedPositive = a.top.filter((t) => t.product > 0).reduce((s, t) => s + t.product, 0);
  const listedNegative = a.top.filter((t) => t.product < 0).reduce((s, t) => s + t.product, 0);
  const scale = Math.max(Math.abs(a.positive), Math.abs(a.negative), Math.abs(a.bias), Math.abs(a.result));
  const parts = [
    el("p", "formula", `y = Σ w_i x_i + b over ${a.inputs} inputs: ${a.positive_count} products add, ` +
      `${a.negative_count} subtract, ${a.inputs - a.positive_count - a.negative_count} are zero.`),
    bars([
      { label: `the ${a.positive_count} positive products`, value: a.positive },
      { label: `the ${a.negative_count} negative products`, value: a.negative },
      { label: "bias b", value: a.bias },
      { label: "y", value: a.result },
    ], scale),
    el("h4", "", `The ${a.top.length} largest products (${fmt(100 * (Math.abs(listedPositive) + Math.abs(listedNegative)) /
      (Math.abs(a.positive) + Math.abs(a.negative) || 1), 0)}% of all the products' size)`),
    table(["input i", "x_i", "w_i", "w_i · x_i"], a.top.map((t) => [t.index, fmt(t.x), fmt(t.w), fmt(t.product)])),
    el("p", "formula rest", `+ the other ${a.rest.positive_count} positive products: +${fmt(a.rest.positive)}; ` +
      `+ the other ${a.rest.negative_count} negative products: ${fmt(a.rest.negative)}; + bias ${fmt(a.bias)}`),
  ];
  parts.at(-1).dataset.rest = a.rest.positive + a.rest.negative;
  if (a.by_map) {
    const ranked = [...a.by_map].sort((p, q) => Math.abs(q.positive + q.negative) - Math.abs(p.positive + p.negative));
    const shown = ranked.slice(0, 16);
    const others = ranked.slice(16).reduce((s, m) => s + m.positive + m.negative, 0);
    const [, height, width] = a.from_shape;
    const mapScale = Math.max(Math.abs(others), ...ranked.map((m) => Math.abs(m.positive + m.negative)));
    parts.push(el("h4", "", `By input map: what each of ${a.from}'s ${a.by_map.length} maps (${height}×${width} values each) adds`),
      bars([...shown.map((m) => ({ label: `map ${m.map}`, value: m.positive + m.negative,
        note: `positive ${fmt(m.positive)}, negative ${fmt(m.negative)}` })),
      ...(ranked.length > 16 ? [{ label: `the other ${ranked.length - 16} maps`, value: others }] : [])], mapScale));
  }
  parts.push(resultLine(a, `y = ${fmt(a.positive)} + (${fmt(a.negative)}) + ${fmt(a.bias)}`));
  return parts;
}

// ---- softmax -------------------------------------------------------------------------------------------------
function drawSoftmax(a, view) {
  const classes = view.classes || a.logits.map((_, i) => String(i));
  const shifted = a.shift ? ` (e^(z − ${fmt(a.shift)}): subtracting the largest logit changes no probability and keeps e^z finite)` : "";
  return [
    el("p", "formula", `p_i = e^z_i / Σ_j e^z_j, from the last layer's outputs z (the logits)` +
      (a.pixel ? ` of the pixel at row ${a.pixel[0]}, column ${a.pixel[1]}: each pixel's scores are normalized on their own` : "") +
      `${shifted}.`),
    table(["class", "logit z", "e^z", "p = e^z / Σ"], a.logits.map((z, i) => [classes[i], fmt(z), fmt(a.exps[i]), fmt(a.exps[i] / a.sum)]), a.index[0]),
    el("p", "formula", `Σ e^z = ${fmt(a.sum)}`),
    resultLine(a, `p(${classes[a.index[0]]}) = ${fmt(a.exps[a.index[0]])} / ${fmt(a.sum)}`),
  ];
}

// ---- convolution: the patch times the kernel, and the kernel sliding over the real input ---------------------
function drawConv(a, view) {
  const parts = [];
  if (view.first) parts.push(el("p", "note", "This layer's input is the normalized image, (pixel / 255 − mean) / std, as in training."));
  const shownChannels = 6;
  // the patches in the colours of the maps they come from (greys when those have no negative)
  const [inputLow, inputHigh] = a.maps?.before ? range(floatsOf(a.maps.before)) : range(flat(a.patch));
  a.patch.slice(0, shownChannels).forEach((patch, i) => {
    const kernel = a.kernel[i];
    const products = patch.map((row, r) => row.map((v, c) => v * kernel[r][c]));
    const line = el("div", "sum");
    const [kl, kh] = range(flat(kernel));
    const [ql, qh] = range(flat(products));
    const colour = view.first && a.patch.length === 3 ? ` (${["red", "green", "blue"][i]})` : "";
    line.append(el("span", "", `input ${a.input_channels[i]}${colour}:`), numberGrid(patch, Math.min(inputLow, 0), Math.max(inputHigh, 1e-9)), op("×"),
      numberGrid(kernel, Math.min(kl, -1e-9), Math.max(kh, 1e-9)), op("="), numberGrid(products, Math.min(ql, -1e-9), Math.max(qh, 1e-9)),
      el("span", "total", `Σ = ${a.channel_sums[i].toFixed(4)}`));
    parts.push(line);
  });
  const terms = a.channel_sums.map((v) => v.toFixed(3));
  const sums = terms.length > 16 ? `${terms.slice(0, 8).join(" + ")} + … (${terms.length - 8} more terms)` : terms.join(" + ");
  const drawn = a.patch.length > shownChannels ? ` (first ${shownChannels} drawn above)` : "";
  parts.push(resultLine(a, `Sum over ${a.patch.length} input map(s)${drawn}: ${sums} + bias ${a.bias.toFixed(3)}`));
  if (a.maps?.before) parts.push(slidingKernel(a, view));
  return parts;
}

// The output of a convolution computed here, position by position, from the model's input maps and kernel: the
// same multiply-and-sum as above, at every place the kernel visits.
function convolveAll(a) {
  const inputs = floatsOf(a.maps.before);
  const [channels, height, width] = a.maps.before.shape;
  const [sy, sx] = a.stride, [py, px] = a.padding, [dy, dx] = a.dilation;
  const kh = a.kernel[0].length, kw = a.kernel[0][0].length;
  const outH = Math.floor((height + 2 * py - dy * (kh - 1) - 1) / sy) + 1;
  const outW = Math.floor((width + 2 * px - dx * (kw - 1) - 1) / sx) + 1;
  const at = (c, r, q) => (r < 0 || q < 0 || r >= height || q >= width ? 0 : inputs[(c * height + r) * width + q]);
  const out = new Float64Array(outH * outW);
  for (let y = 0; y < outH; y++) {
    for (let x = 0; x < outW; x++) {
      let sum = a.bias;
      for (let c = 0; c < channels; c++) {
        for (let i = 0; i < kh; i++) for (let j = 0; j < kw; j++) sum += at(c, y * sy - py + i * dy, x * sx - px + j * dx) * a.kernel[c][i][j];
      }
      out[y * outW + x] = sum;
    }
  }
  return { inputs, channels, height, width, outH, outW, out, at, kh, kw };
}

function slidingKernel(a, view) {
  const run = convolveAll(a);
  const { inputs, height, width, outH, outW, out, at, kh, kw } = run;
  const [sy, sx] = a.stride, [py, px] = a.padding, [dy, dx] = a.dilation;
  const box = el("section", "slide");
  box.append(el("h4", "", `The kernel slides over ${view.first ? "the input image" : "the maps it reads"}: ` +
    `${outH}×${outW} places, each one multiply-and-sum`));
  const controls = el("div", "buttons");
  const play = el("button", "", "Play");
  const step = el("button", "", "Step");
  const reset = el("button", "", "Start over");
  [play, step, reset].forEach((b) => { b.type = "button"; });
  controls.append(play, step, reset);
  const where = el("p", "note");
  where.setAttribute("aria-live", "polite");
  const pictures = el("div", "pair");
  const inputCanvas = el("canvas", "slide-input");
  const outputCanvas = el("canvas", "slide-output");
  inputCanvas.setAttribute("role", "img");
  outputCanvas.setAttribute("role", "img");
  pictures.append(figure(inputCanvas, `input map ${a.input_channels[0]} (padding grey), the kernel's window in yellow`), op("→"),
    figure(outputCanvas, `output map ${a.index[0]}, filling in`));
  const numbers = el("div", "slide-numbers");
  box.append(controls, pictures, where, numbers);
  const first = inputs.subarray(0, height * width);
  const [low, high] = range(first);
  const [ol, oh] = range(out);
  const padded = { h: height + 2 * py, w: width + 2 * px };
  const scale = scaleFor(padded.h, padded.w, 240);
  const outScale = scaleFor(outH, outW, 200);
  let position = a.index[1] * outW + a.index[2];  // opens on the chosen pixel
  let filled = position + 1;
  let timer = null;
  const model = floatsOf(a.maps.after);
  let worst = 0;
  out.forEach((v, i) => { worst = Math.max(worst, Math.abs(v - model[i])); });
  box.dataset.maxDifference = worst;  // against the model's own output map: float rounding only

  const draw = () => {
    const y = Math.floor(position / outW), x = position % outW;
    const context = context2d(inputCanvas);
    inputCanvas.width = padded.w * scale;
    inputCanvas.height = padded.h * scale;
    context.fillStyle = "#d1d5db";
    context.fillRect(0, 0, inputCanvas.width, inputCanvas.height);
    const small = document.createElement("canvas");
    enlarged(small, first, height, width, low, high, 1);
    context.imageSmoothingEnabled = false;
    context.drawImage(small, px * scale, py * scale, width * scale, height * scale);
    for (let i = 0; i < kh; i++) {
      for (let j = 0; j < kw; j++) {
        context.fillStyle = "rgba(253, 224, 71, 0.45)";
        context.fillRect((x * sx + j * dx) * scale, (y * sy + i * dy) * scale, scale, scale);
      }
    }
    outline(context, y * sy * scale, x * sx * scale, ((kh - 1) * dy + 1) * scale, ((kw - 1) * dx + 1) * scale);
    const outContext = enlarged(outputCanvas, Array.from(out, (v, i) => (i < filled ? v : NaN)), outH, outW, Math.min(ol, 0), oh,
      outScale, (v, l, h) => (Number.isNaN(v) ? [229, 231, 235] : colourFor(v, l, h)));
    outline(outContext, y * outScale, x * outScale, outScale, outScale);
    where.textContent = `Output row ${y}, column ${x}: ${fmt(out[position])}` +
      (y === a.index[1] && x === a.index[2] ? " (the pixel explained above)" : "");
    const patch = Array.from({ length: kh }, (_, i) => Array.from({ length: kw }, (_, j) => at(0, y * sy - py + i * dy, x * sx - px + j * dx)));
    const kernel = a.kernel[0];
    const products = patch.map((row, r) => row.map((v, c) => v * kernel[r][c]));
    const line = el("div", "sum");
    const [pl, ph] = range([low, high]);  // the map's own scale
    const [kl, kh2] = range(flat(kernel));
    const [ql, qh] = range(flat(products));
    line.append(numberGrid(patch, Math.min(pl, 0), Math.max(ph, 1e-9), [], 2), op("×"),
      numberGrid(kernel, Math.min(kl, -1e-9), Math.max(kh2, 1e-9)), op("="), numberGrid(products, Math.min(ql, -1e-9), Math.max(qh, 1e-9)),
      el("span", "total", `Σ = ${products.flat().reduce((s, v) => s + v, 0).toFixed(4)}`));
    const more = run.channels > 1 ? `, plus the same over the other ${run.channels - 1} input maps` : "";
    numbers.replaceChildren(line, el("p", "note", `Input map ${a.input_channels[0]}'s window × its kernel${more}, plus the bias ` +
      `${fmt(a.bias)}: ${fmt(out[position])}.`));
    box.dataset.position = `${y},${x}`;
    box.dataset.value = out[position];
  };
  const advance = () => {
    position = (position + 1) % (outH * outW);
    if (position === 0) filled = 0;
    filled = Math.max(filled, position + 1);
    draw();
    if (filled >= outH * outW && position === outH * outW - 1) stop();
  };
  const stop = () => { clearInterval(timer); timer = null; play.textContent = "Play"; };
  play.addEventListener("click", () => {
    if (timer) { stop(); return; }
    if (filled >= outH * outW) { position = -1; filled = 0; }
    play.textContent = "Pause";
    const interval = reducedMotion ? 600 : Math.max(15, Math.min(120, 6000 / (outH * outW)));
    timer = setInterval(advance, interval);
  });
  step.addEventListener("click", () => { stop(); advance(); });
  reset.addEventListener("click", () => { stop(); position = 0; filled = 1; draw(); });
  view.onClose(stop);
  draw();
  return box;
}

const figure = (canvas, caption) => {
  const f = el("figure", "view-map");
  canvas.setAttribute("aria-label", caption);
  f.append(canvas, el("figcaption", "", caption));
  return f;
};

// ---- the others ------------------------------------------------------------------------------------------
function drawDeconv(a) {
  const terms = [...a.terms].sort((p, q) => Math.abs(q.product) - Math.abs(p.product));
  const parts = [el("p", "formula", `A transposed convolution (stride ${a.stride.join("×")}, padding ${a.padding.join("×")}, ` +
    `dilation ${a.dilation.join("×")}) spreads each input pixel over the output: input (row i, column j) adds ` +
    "value × kernel at output rows i·s − p + k_y·d. This output pixel receives " +
    (terms.length ? `${terms.length} contribution(s):` : "no contribution at all (a gap between the spread kernels): only the bias."))];
  if (terms.length) {
    parts.push(table(["input map", "row", "column", "value", "kernel (ky, kx)", "weight", "value × weight"],
      terms.slice(0, 12).map((t) => [t.channel, t.y, t.x, fmt(t.value), `(${t.ky}, ${t.kx})`, fmt(t.weight), fmt(t.product)])));
    if (terms.length > 12) {
      const rest = terms.slice(12).reduce((s, t) => s + t.product, 0);
      parts.push(el("p", "note", `… and ${terms.length - 12} smaller contributions, together ${fmt(rest)}.`));
    }
  }
  parts.push(resultLine(a, `Σ of the contributions + bias ${fmt(a.bias)}`));
  if (a.spread) {
    const s = a.spread;
    const [kl, kh] = range(flat(s.kernel));
    const [pl, ph] = range(flat(s.products));
    const line = el("div", "sum");
    line.append(el("span", "", `How input map ${s.channel}, row ${s.y}, column ${s.x} spreads: ${fmt(s.value)} ×`),
      numberGrid(s.kernel, Math.min(kl, -1e-9), Math.max(kh, 1e-9)), op("="), numberGrid(s.products, Math.min(pl, -1e-9), Math.max(ph, 1e-9)),
      el("span", "note", `added to the output from row ${s.top}, column ${s.left} on, every ${a.dilation[0]} pixel(s).`));
    parts.push(line);
  }
  return parts;
}

export const VIEWS = {
  conv: { title: "input patch × kernel, summed, plus the bias", draw: drawConv },
  deconv: { title: "what the input pixels spread onto this output pixel", draw: drawDeconv },
  activation: { title: "an element-wise function of the value before it", draw: drawActivation },
  pool: { title: "one window of the map before it", draw: drawPool },
  batchnorm: { title: "normalized with the running statistics, then scaled and shifted", draw: (a) => [
    el("p", "formula", "y = (x − μ) / √(σ² + ε) · γ + β"),
    el("p", "formula", `= (${fmt(a.x)} − ${fmt(a.mean)}) / √(${fmt(a.var)} + ${a.eps}) · ${fmt(a.gamma)} + ${fmt(a.beta)}` +
      ` = ${fmt(a.normalized)} · ${fmt(a.gamma)} + ${fmt(a.beta)}`),
    resultLine(a, "y")] },
  lrn: { title: "divided by the activity of the neighbouring channels", draw: (a) => [
    el("p", "formula", `b = x / (k + α/n · Σ x_c²)^β over channels ${a.channels[0]}–${a.channels.at(-1)}`),
    table(["channel", "x_c", "x_c²"], a.channels.map((c, i) => [c, fmt(a.values[i]), fmt(a.values[i] ** 2)])),
    el("p", "formula", `= ${fmt(a.x)} / (${a.k} + ${a.alpha}/${a.size} · ${fmt(a.values.reduce((s, v) => s + v * v, 0))})^${a.beta} = ${fmt(a.x)} / ${fmt(a.denominator)}`),
    resultLine(a, "b")] },
  flatten: { title: "the maps laid out as one vector", draw: drawFlatten },
  linear: { title: "a weighted sum of every value of the layer before it", draw: drawLinear },
  softmax: { title: "exponentials, normalized to sum to 1", draw: drawSoftmax },
  residual: { title: "the block's two branches added", draw: (a) => [
    el("p", "formula", `main branch (${a.main_from}) ${fmt(a.main)} + shortcut (${a.shortcut_from}) ${fmt(a.shortcut)}`),
    resultLine(a, "sum"),
    el("p", "note", `${a.then} is applied to this sum next.`)] },
};
