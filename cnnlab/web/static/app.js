// The explorer page: every number comes from the JSON API (see /openapi.json); this file only draws.
const $ = (selector) => document.querySelector(selector);
const state = { sources: [], source: null, digit: null, layers: [], examplesStart: 0, dataset: null, filters: [] };

// ---- API -------------------------------------------------------------------------------------------------
async function api(path, options = {}) {
  // body[data-pending] counts requests in flight: "0" means the page shows its final answer (the tests wait for it).
  const pending = (change) => { document.body.dataset.pending = Number(document.body.dataset.pending || 0) + change; };
  pending(+1);
  let response, body;
  try {
    response = await fetch(path, options);
    body = await response.json().catch(() => ({}));
  } finally {
    pending(-1);
  }
  if (!response.ok) {
    const detail = Array.isArray(body.detail) ? body.detail.map((d) => d.msg).join("; ") : body.detail;
    throw new Error(detail || `${path}: HTTP ${response.status}`);
  }
  return body;
}
const postJSON = (path, body) => api(path, {
  method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
});

// The status line shows the last error and which kind of request made it: only a later success of the same
// kind clears it (an answer to an earlier drawing's activations must not wipe a refused upload's reason).
let statusKind = null;
function setStatus(message, kind = null) {
  $("#status").textContent = message || "";
  statusKind = message ? kind : null;
}

// A newer request of a kind makes older answers of that kind stale: drawing fires many, and only the last
// one may paint.
const generations = {};
async function latest(kind, work) {
  const mine = (generations[kind] = (generations[kind] || 0) + 1);
  try {
    const result = await work();
    if (mine !== generations[kind]) return null;
    if (statusKind === kind) setStatus("");
    return result;
  } catch (err) {
    if (mine === generations[kind]) setStatus(err.message, kind);
    return null;
  }
}

// ---- colours ---------------------------------------------------------------------------------------------
// Signed values use a diverging scale centred on zero (blue negative, red positive); non-negative ones
// (images, ReLU and pooling outputs) a grayscale, so the input looks like MNIST: white ink on black.
function colourFor(value, low, high) {
  if (low < 0) {
    const scale = Math.max(-low, high) || 1;
    const t = Math.max(-1, Math.min(1, value / scale));
    const [r, g, b] = t >= 0 ? [192, 57, 43] : [33, 102, 172];
    const a = Math.abs(t);
    return [255 + (r - 255) * a, 255 + (g - 255) * a, 255 + (b - 255) * a];
  }
  const v = high > low ? (255 * (value - low)) / (high - low) : 0;
  return [v, v, v];
}

function paint(canvas, values, height, width, low, high) {
  canvas.width = width;
  canvas.height = height;
  const context = canvas.getContext("2d");
  const image = context.createImageData(width, height);
  for (let i = 0; i < height * width; i++) {
    const [r, g, b] = colourFor(values[i], low, high);
    image.data.set([r, g, b, 255], 4 * i);
  }
  context.putImageData(image, 0, 0);
}

const flat = (rows) => rows.flat(Infinity);
const range = (values) => [Math.min(...values), Math.max(...values)];
const paintDigit = (canvas, digit) => paint(canvas, flat(digit), 28, 28, 0, 255);

function decodeMaps(layer) {
  // The API sends maps as uint8 scaled to the layer's [min, max]; scale back to the layer's own numbers.
  const bytes = Uint8Array.from(atob(layer.maps), (c) => c.charCodeAt(0));
  const [, height, width] = layer.shape;
  const size = height * width;
  const maps = [];
  for (let k = 0; k < layer.shown; k++) {
    maps.push(Array.from(bytes.subarray(k * size, (k + 1) * size), (b) => layer.min + (b / 255) * (layer.max - layer.min)));
  }
  return maps;
}

// ---- sources ---------------------------------------------------------------------------------------------
async function loadSources() {
  state.sources = await api("api/sources");
  const select = $("#source");
  select.replaceChildren(...state.sources.map((s) => {
    const option = document.createElement("option");
    option.value = s.id;
    option.textContent = s.kind === "file" ? `${s.name} (your model${s.random_weights ? ", initial weights" : ""})`
      : s.kind !== "run" ? `${s.name} (untrained, random weights)`
      : s.damaged ? `${s.name} (damaged: ${s.damaged})`
      : `${s.name} (${s.model}, ${s.dataset}${s.test_acc != null ? `, ${(100 * s.test_acc).toFixed(1)}%` : ""})`;
    return option;
  }));
  select.addEventListener("change", () => chooseSource(select.value));
  await chooseSource(state.sources[0].id);
}

async function chooseSource(id) {
  const source = state.sources.find((s) => s.id === id);
  state.source = source;
  $("#source").value = id;
  const note = $("#source-note");
  note.classList.toggle("warn", source.random_weights);
  note.textContent = source.kind === "file"
    ? `Your model ${source.model} (--model), ${source.random_weights ? "with the weights it builds itself" :
      "with the --weights given"}; inputs normalized as ${source.dataset}'s.`
    : source.random_weights
    ? "Untrained: the weights are random, so predictions mean nothing. Train one with `cnnlab train`."
    : `Run of ${source.model} on ${source.dataset}, ${source.engine} engine, ${source.epochs} epoch(s)` +
      (source.test_acc != null ? `, test accuracy ${(100 * source.test_acc).toFixed(2)}%.` : ".");
  if (state.dataset !== source.dataset) {
    state.dataset = source.dataset;
    state.examplesStart = 0;
    await loadExamples();
  }
  await loadLearnedFilters();
  if (state.digit) await analyse();
}

// ---- input -----------------------------------------------------------------------------------------------
async function loadExamples() {
  const data = await api(`api/examples/${encodeURIComponent(state.dataset)}?start=${state.examplesStart}&count=12`);
  $("#examples").replaceChildren(...data.examples.map((example) => {
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.index = example.index;
    button.dataset.label = data.classes[example.label];
    button.title = `test image ${example.index}: ${data.classes[example.label]}`;
    const canvas = document.createElement("canvas");
    paintDigit(canvas, example.digit);
    const caption = document.createElement("span");
    caption.textContent = data.classes[example.label];
    button.append(canvas, caption);
    button.addEventListener("click", () => {
      document.querySelectorAll(".examples button.chosen").forEach((b) => b.classList.remove("chosen"));
      button.classList.add("chosen");
      clearCanvas();
      setDigit(example.digit, `test image #${example.index}, labelled ${data.classes[example.label]}, as stored (already 28×28).`);
    });
    return button;
  }));
  state.examplesStart = (state.examplesStart + 12) % data.total;
}

async function predictUpload(blob, name) {
  const form = new FormData();
  form.append("image", blob, name);
  form.append("source", state.source.id);
  const result = await latest("predict", () => api("api/predict", { method: "POST", body: form }));
  if (result) {
    showProbabilities(result.classes, result.probabilities);
    await setDigit(result.digit, `${name}, preprocessed: grayscale, white on black, cropped, scaled to 20×20 and ` +
      "centred by mass — exactly what `cnnlab predict` does.");
  }
}

async function setDigit(digit, where) {
  state.digit = digit;
  paintDigit($("#seen"), digit);
  $("#seen-note").textContent = where;
  paintDigit($("#conv-input"), digit);
  await Promise.all([analyse(), convolvePlayground()]);
}

async function analyse() {
  const result = await latest("activations", () => postJSON("api/activations", { source: state.source.id, digit: state.digit, max_maps: 32 }));
  if (!result) return;
  showProbabilities(result.classes, result.probabilities);
  showNetwork(result);
}

function showProbabilities(classes, probabilities) {
  const best = probabilities.indexOf(Math.max(...probabilities));
  $("#prediction").textContent = classes[best];
  $("#probs").replaceChildren(...classes.map((name, i) => {
    const item = document.createElement("li");
    item.dataset.p = probabilities[i];
    item.classList.toggle("top", i === best);
    item.innerHTML = `<span class="label"></span><span class="bar"><span></span></span><span class="value"></span>`;
    item.querySelector(".label").textContent = name;
    item.querySelector(".bar span").style.width = `${100 * probabilities[i]}%`;
    item.querySelector(".value").textContent = `${(100 * probabilities[i]).toFixed(1)}%`;
    return item;
  }));
}

// ---- drawing ---------------------------------------------------------------------------------------------
const draw = $("#draw");
const pen = draw.getContext("2d");
function clearCanvas() {
  pen.fillStyle = "#fff";
  pen.fillRect(0, 0, draw.width, draw.height);
  draw.dataset.ink = "0";
}

function setupDrawing() {
  clearCanvas();
  let last = null;
  let timer = null;
  const point = (event) => {
    const box = draw.getBoundingClientRect();
    return [(event.clientX - box.left) * (draw.width / box.width), (event.clientY - box.top) * (draw.height / box.height)];
  };
  const send = () => draw.toBlob((blob) => predictUpload(blob, "drawing"), "image/png");
  draw.addEventListener("pointerdown", (event) => {
    document.querySelectorAll(".examples button.chosen").forEach((b) => b.classList.remove("chosen"));
    draw.setPointerCapture(event.pointerId);
    last = point(event);
    pen.lineWidth = 20; pen.lineCap = "round"; pen.lineJoin = "round"; pen.strokeStyle = "#000";
  });
  draw.addEventListener("pointermove", (event) => {
    if (!last) return;
    const next = point(event);
    pen.beginPath(); pen.moveTo(...last); pen.lineTo(...next); pen.stroke();
    last = next;
    draw.dataset.ink = "1";
    // Live update while drawing, but at most a few requests per second.
    timer = timer || setTimeout(() => { timer = null; send(); }, 250);
  });
  const end = () => {
    if (!last) return;
    last = null;
    clearTimeout(timer);  // the final send below supersedes a throttled one
    timer = null;
    if (draw.dataset.ink === "1") send();
  };
  draw.addEventListener("pointerup", end);
  draw.addEventListener("pointercancel", end);
  $("#clear").addEventListener("click", clearCanvas);
  $("#upload").addEventListener("change", (event) => {
    const file = event.target.files[0];
    if (file) predictUpload(file, file.name);
    event.target.value = "";
  });
  $("#more-examples").addEventListener("click", loadExamples);
}

// ---- network overview ------------------------------------------------------------------------------------
function showNetwork(result) {
  state.layers = result.layers;
  const rows = [layerRow({ name: "input", type: "28×28 image", shape: [1, 28, 28] }, [flat(state.digit)], 0, 255)];
  for (const layer of result.layers) {
    if (layer.maps) {
      rows.push(layerRow(layer, decodeMaps(layer), layer.min, layer.max));
    } else {
      rows.push(vectorRow(layer));
    }
  }
  rows.push(vectorRow({ name: "softmax", type: "probabilities", shape: [result.probabilities.length],
    values: result.probabilities, shown: result.probabilities.length }, result.classes));
  $("#network").replaceChildren(...rows);
  // An open map follows the input (drawing updates it live); it closes if the new model has no such map.
  const open = state.detail && $(`.layer[data-layer="${CSS.escape(state.detail.layer)}"] canvas.map:nth-of-type(${state.detail.channel + 1})`);
  if (open) open.dispatchEvent(new CustomEvent("click", { detail: "follow" }));
  else $("#detail").hidden = true;
}

function rowHead(layer) {
  const row = document.createElement("div");
  row.className = "layer";
  row.dataset.layer = layer.name;
  const head = document.createElement("div");
  head.innerHTML = `<div class="name"></div><div class="meta"></div>`;
  head.querySelector(".name").textContent = layer.name;
  const kernel = layer.kernel ? ` · kernels ${layer.kernel.join("×")}` : "";
  head.querySelector(".meta").textContent = `${layer.type} · ${layer.shape.join("×")}${kernel}`;
  row.append(head);
  return row;
}

function layerRow(layer, maps, low, high) {
  const row = rowHead(layer);
  const box = document.createElement("div");
  box.className = "maps";
  const [, height, width] = layer.shape;
  maps.forEach((values, channel) => {
    const canvas = document.createElement("canvas");
    canvas.className = "map";
    canvas.title = `${layer.name} map ${channel}`;
    // Keyboard users reach the maps too: each is a focusable button.
    canvas.tabIndex = 0;
    canvas.setAttribute("role", "button");
    canvas.setAttribute("aria-label", canvas.title);
    paint(canvas, values, height, width, low, high);
    canvas.addEventListener("click", (event) => {
      document.querySelectorAll(".maps canvas.chosen").forEach((c) => c.classList.remove("chosen"));
      canvas.classList.add("chosen");
      openDetail(layer, channel, values, low, high, event.detail === "follow");
    });
    canvas.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") { event.preventDefault(); canvas.click(); }
    });
    box.append(canvas);
  });
  if (layer.shape[0] > maps.length) {
    const more = document.createElement("span");
    more.className = "more";
    more.textContent = `+ ${layer.shape[0] - maps.length} more maps`;
    box.append(more);
  }
  row.append(box);
  return row;
}

function vectorRow(layer, labels) {
  const row = rowHead(layer);
  const strip = document.createElement("div");
  strip.className = labels ? "strip labelled" : "strip";
  const [low, high] = range(layer.values);
  layer.values.forEach((value, i) => {
    const cell = document.createElement("span");
    if (labels) {
      cell.style.background = `rgba(22, 163, 74, ${value})`;  // probabilities: the greener, the likelier
    } else {
      const [r, g, b] = colourFor(value, Math.min(low, 0), high);
      cell.style.background = `rgb(${r},${g},${b})`;
    }
    cell.title = `${labels ? labels[i] : i}: ${value.toFixed(4)}`;
    if (labels) cell.textContent = `${labels[i]} ${(100 * value).toFixed(0)}%`;
    strip.append(cell);
  });
  if (layer.shape[0] > layer.shown) {
    const more = document.createElement("span");
    more.className = "more";
    more.textContent = `+ ${layer.shape[0] - layer.shown} more`;
    strip.append(more);
  }
  row.append(strip);
  return row;
}

// ---- detail: one map enlarged, the kernels that made it, the multiply-and-sum at a pixel --------------------
function openDetail(layer, channel, values, low, high, following) {
  const [, height, width] = layer.shape;
  const same = following && state.detail.layer === layer.name && state.detail.channel === channel;
  const start = same ? state.detail.point : [Math.floor(height / 2), Math.floor(width / 2)];
  state.detail = { layer: layer.name, channel, point: start };
  const panel = $("#detail");
  panel.hidden = false;
  $("#detail-title").textContent = `${layer.name} · map ${channel} · ${height}×${width}`;
  const canvas = $("#detail-map");
  const show = (mark) => {
    paintEnlarged(canvas, values, height, width, low, high, mark);
    // Maps travel as 8 bits over the layer's range: the value is known to half a step.
    $("#detail-value").textContent = mark
      ? `Here (row ${mark[0]}, column ${mark[1]}): ${values[mark[0] * width + mark[1]].toFixed(4)} ± ${((high - low) / 510).toFixed(4)}`
      : "";
  };
  $("#explain").replaceChildren();
  const isConv = layer.type === "Conv2d";
  const maker = isConv ? layer : precedingConv(layer);
  $("#detail-note").textContent = isConv
    ? "Click a pixel to see the multiply-and-sum that computed it."
    : maker
      ? `${layer.type} output. The nearest convolution before it, ${maker.name}, made map ${channel} ` +
        "(batch norm or residual additions between them are not drawn). Click a pixel for the sum at the largest " +
        "convolution output under it."
      : `${layer.type} output.`;
  // A pixel of this map, mapped to the convolution's output grid: activations keep the grid; pooling shrinks it,
  // and then the window's largest convolution output is the one shown (the one max pooling keeps).
  const explainAt = (y, x) => {
    state.detail.point = [y, x];
    show([y, x]);
    const [, mh, mw] = maker.shape;
    const rows = [Math.floor((y * mh) / height), Math.max(Math.floor(((y + 1) * mh) / height), Math.floor((y * mh) / height) + 1)];
    const cols = [Math.floor((x * mw) / width), Math.max(Math.floor(((x + 1) * mw) / width), Math.floor((x * mw) / width) + 1)];
    const values = channel < maker.shown ? decodeMaps(maker)[channel] : null;
    let best = [Math.min(rows[0], mh - 1), Math.min(cols[0], mw - 1)];
    for (let r = rows[0]; values && r < Math.min(rows[1], mh); r++) {
      for (let c = cols[0]; c < Math.min(cols[1], mw); c++) {
        if (values[r * mw + c] > values[best[0] * mw + best[1]]) best = [r, c];
      }
    }
    explain(maker.name, channel, ...best);
  };
  canvas.onclick = (event) => {
    const box = canvas.getBoundingClientRect();
    const y = Math.min(height - 1, Math.floor(((event.clientY - box.top) / box.height) * height));
    const x = Math.min(width - 1, Math.floor(((event.clientX - box.left) / box.width) * width));
    if (maker) explainAt(y, x);
    else show([y, x]);
  };
  if (maker) explainAt(...start);
  else show(null);
  if (!following) panel.scrollIntoView({ behavior: "smooth", block: "nearest" });
}

function paintEnlarged(canvas, values, height, width, low, high, mark) {
  // Drawn at 12 screen pixels per map pixel so the chosen pixel can be outlined.
  const small = document.createElement("canvas");
  paint(small, values, height, width, low, high);
  const scale = 12;
  canvas.width = width * scale;
  canvas.height = height * scale;
  const context = canvas.getContext("2d");
  context.imageSmoothingEnabled = false;
  context.drawImage(small, 0, 0, canvas.width, canvas.height);
  if (mark) {
    context.lineWidth = 2;
    context.strokeStyle = "#16a34a";
    context.strokeRect(mark[1] * scale + 1, mark[0] * scale + 1, scale - 2, scale - 2);
  }
}

function precedingConv(layer) {
  // The nearest convolution before this layer with as many maps: ReLU, BN and pooling keep channel c as c.
  const index = state.layers.findIndex((l) => l.name === layer.name);
  for (let i = index - 1; i >= 0; i--) {
    const candidate = state.layers[i];
    if (candidate.type === "Conv2d") return candidate.shape[0] === layer.shape[0] ? candidate : null;
  }
  return null;
}

function numberGrid(rows, low, high) {
  const grid = document.createElement("div");
  grid.className = "grid";
  grid.style.gridTemplateColumns = `repeat(${rows[0].length}, auto)`;
  for (const value of rows.flat()) {
    const cell = document.createElement("span");
    const [r, g, b] = colourFor(value, Math.min(low, -1e-9), Math.max(high, 1e-9));
    cell.style.background = `rgb(${r},${g},${b})`;
    cell.textContent = value.toFixed(2);
    grid.append(cell);
  }
  return grid;
}

async function explain(layerName, channel, y, x) {
  const result = await latest("explain", () => postJSON("api/explain", { source: state.source.id, digit: state.digit, layer: layerName, channel, y, x }));
  if (!result) return;
  const box = $("#explain");
  const title = document.createElement("h3");
  title.textContent = `${layerName}, filter ${channel}, output pixel (row ${y}, column ${x}): input patch × kernel, summed`;
  const parts = [title];
  if (state.layers[0]?.name === layerName) {
    parts.push(Object.assign(document.createElement("p"), { className: "note",
      textContent: "This layer's input is the normalized image, (pixel / 255 − mean) / std, as in training." }));
  }
  const shownChannels = 6;
  result.patch.slice(0, shownChannels).forEach((patch, i) => {
    const products = patch.map((row, r) => row.map((v, c) => v * result.kernel[i][r][c]));
    const line = document.createElement("div");
    line.className = "sum";
    const [pl, ph] = range(flat(patch));
    const [kl, kh] = range(flat(result.kernel[i]));
    const [ql, qh] = range(flat(products));
    const label = document.createElement("span");
    label.textContent = `input ${result.input_channels[i]}:`;
    const op = (text) => Object.assign(document.createElement("span"), { className: "op", textContent: text });
    const total = Object.assign(document.createElement("span"), { className: "total", textContent: result.channel_sums[i].toFixed(4) });
    line.append(label, numberGrid(patch, pl, ph), op("×"), numberGrid(result.kernel[i], kl, kh), op("="),
      numberGrid(products, ql, qh), op("Σ ="), total);
    parts.push(line);
  });
  const equation = document.createElement("p");
  equation.className = "total";
  equation.id = "explain-sum";
  const terms = result.channel_sums.map((s) => s.toFixed(3));
  const sums = terms.length > 16 ? `${terms.slice(0, 8).join(" + ")} + … (${terms.length - 8} more terms)` : terms.join(" + ");
  const drawn = result.patch.length > shownChannels ? ` (first ${shownChannels} drawn above)` : "";
  equation.textContent = `Sum over ${result.patch.length} input map(s)${drawn}: ${sums} + bias ${result.bias.toFixed(3)} = ` +
    `${result.sum.toFixed(4)}; the model computed ${result.actual.toFixed(4)}.`;
  parts.push(equation);
  box.replaceChildren(...parts);
}

// ---- learned filters -------------------------------------------------------------------------------------
async function loadLearnedFilters() {
  let result;
  try {
    result = await api(`api/kernels?source=${encodeURIComponent(state.source.id)}&max_filters=64`);
  } catch (err) {
    $("#learned-note").textContent = err.message;
    $("#learned").replaceChildren();
    return;
  }
  const [count, inputs, kh, kw] = result.shape;
  $("#learned-note").textContent = `${result.layer}: ${count} filters of ${inputs}×${kh}×${kw}` +
    (state.source.random_weights ? " (random: this model is untrained)." : ", learned in training.") +
    (inputs > 1 ? " Input channel 0 shown." : "") + " Red positive, blue negative.";
  $("#learned").replaceChildren(...result.weights.map((filter, i) => {
    const figure = document.createElement("figure");
    const canvas = document.createElement("canvas");
    const values = flat(filter[0]);
    const [low, high] = range(values);
    const scale = Math.max(-low, high);
    paint(canvas, values, kh, kw, -scale, scale);
    const caption = document.createElement("figcaption");
    caption.textContent = i;
    figure.append(canvas, caption);
    return figure;
  }));
}

// ---- filter playground -----------------------------------------------------------------------------------
async function setupPlayground() {
  state.filters = await api("api/filters");
  const pick = $("#filter-pick");
  pick.replaceChildren(...state.filters.map((f) => new Option(f.title, f.name)), new Option("Custom (edit the kernel)", "custom"));
  const grid = $("#kernel");
  grid.replaceChildren(...Array.from({ length: 9 }, (_, i) => {
    const input = document.createElement("input");
    input.type = "number";
    input.step = "any";
    input.setAttribute("aria-label", `kernel row ${Math.floor(i / 3)} column ${i % 3}`);
    input.addEventListener("input", () => { pick.value = "custom"; convolvePlayground(); });
    return input;
  }));
  const useFilter = () => {
    const chosen = state.filters.find((f) => f.name === pick.value);
    if (!chosen) return;
    flat(chosen.kernel).forEach((v, i) => { grid.children[i].value = +v.toFixed(4); });
    convolvePlayground();
  };
  pick.addEventListener("change", useFilter);
  pick.value = "edge-detection-2";
  useFilter();
}

async function convolvePlayground() {
  if (!state.digit) return;
  const values = Array.from($("#kernel").children, (input) => Number(input.value));
  if (values.some((v) => !Number.isFinite(v))) return;
  const kernel = [values.slice(0, 3), values.slice(3, 6), values.slice(6, 9)];
  const image = state.digit.map((row) => row.map((v) => v / 255));
  const result = await latest("convolve", () => postJSON("api/convolve", { image, kernel, padding: "same" }));
  if (result) {
    const out = flat(result.output);
    const [low, high] = range(out);
    paint($("#conv-output"), out, 28, 28, low, high);
    $("#conv-output").dataset.range = `${low},${high}`;
    $("#conv-range").textContent = `values ${low.toFixed(2)} to ${high.toFixed(2)}`;
  }
}

// ---- start -----------------------------------------------------------------------------------------------
setupDrawing();
Promise.all([loadSources(), setupPlayground()])
  .then(() => { document.querySelector(".examples button")?.click(); })  // start with something to look at
  .then(() => { document.body.dataset.ready = "1"; })
  .catch((err) => setStatus(err.message));
