// The explorer page: every number comes from the JSON API (see /openapi.json); this file only draws.
const $ = (selector) => document.querySelector(selector);
const reducedMotion = window.matchMedia("(prefers-reduced-motion: reduce)").matches;
const state = { sources: [], source: null, digit: null, layers: [], examplesStart: 0, dataset: null, filters: [] };

// ---- API -------------------------------------------------------------------------------------------------
// body[data-pending] counts requests in flight, and drawings on their way to becoming one: "0" means the page
// shows its final answer (the tests wait for it).
const pending = (change) => { document.body.dataset.pending = Number(document.body.dataset.pending || 0) + change; };
async function api(path, options = {}) {
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

// Probabilities and other values in [0, 1]: viridis, whose lightness rises steadily (it reads in greyscale) and
// which colour-blind readers see as the same ramp.
const VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
function viridis(t) {
  const x = Math.max(0, Math.min(1, t)) * (VIRIDIS.length - 1);
  const i = Math.min(VIRIDIS.length - 2, Math.floor(x));
  return VIRIDIS[i].map((c, k) => c + (VIRIDIS[i + 1][k] - c) * (x - i));
}

function paint(canvas, values, height, width, low, high, colours = colourFor) {
  canvas.width = width;
  canvas.height = height;
  const context = canvas.getContext("2d");
  const image = context.createImageData(width, height);
  for (let i = 0; i < height * width; i++) {
    const [r, g, b] = colours(values[i], low, high);
    image.data.set([r, g, b, 255], 4 * i);
  }
  context.putImageData(image, 0, 0);
}

const flat = (rows) => rows.flat(Infinity);
const range = (values) => values.reduce(([lo, hi], v) => [Math.min(lo, v), Math.max(hi, v)], [Infinity, -Infinity]);
// An input is rows of pixels (a digit, a scene) or [channel][row][pixel] (a colour photo): its [C, H, W].
const shapeOf = (image) => (Array.isArray(image[0][0]) ? [image.length, image[0].length, image[0][0].length]
  : [1, image.length, image[0].length]);
// The input as the model sees it: grey, or red, green and blue channels drawn together.
function paintDigit(canvas, image) {
  const [channels, height, width] = shapeOf(image);
  if (channels !== 3) { paint(canvas, flat(image), height, width, 0, 255); return; }
  const [r, g, b] = image.map(flat);
  paint(canvas, r.map((_, i) => i), height, width, 0, 255, (i) => [r[i], g[i], b[i]]);
}
// One grey image of the input (a colour photo's channels averaged), scaled to [0, 1], for the playground.
const greyRows = (image) => (shapeOf(image)[0] === 1 ? image.map((row) => row.map((v) => v / 255))
  : image[0].map((row, r) => row.map((_, c) => image.reduce((sum, channel) => sum + channel[r][c], 0) / (255 * image.length))));

// Classes of a segmentation, colour-blind safe: black background, then Paul Tol's muted scheme and its pale grey
// (distinguishable with any colour vision; the legend names each colour and the score maps show each class alone).
const CLASS_COLOURS = ["#000000", "#cc6677", "#332288", "#ddcc77", "#117733", "#88ccee", "#882255", "#44aa99",
  "#999933", "#aa4499", "#dddddd"];
const classColour = (c) => CLASS_COLOURS[c % CLASS_COLOURS.length].match(/\w\w/g).map((h) => parseInt(h, 16));
const paintClasses = (canvas, classMap) => paint(canvas, flat(classMap), classMap.length, classMap[0].length, 0, 0, classColour);

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
  // a folder dataset the server does not read: said here, and no test images to pick
  if (source.dataset_note) { note.classList.add("warn"); note.textContent += ` Test images: ${source.dataset_note}.`; }
  setInputMode(source);
  if (state.dataset !== source.dataset) {
    state.dataset = source.dataset;
    state.examplesStart = 0;
    state.digit = null;  // another dataset's input would not fit this model
    if (source.dataset_note) $("#examples").replaceChildren();
    else await loadExamples();
    if (document.body.dataset.ready === "1") document.querySelector(".examples button")?.click();
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
    // a segmentation's label is a class per pixel: the caption lists the digits in the scene
    const name = data.task === "segmentation"
      ? [...new Set(flat(example.label))].filter((c) => c).sort((a, b) => a - b).map((c) => data.classes[c]).join(" ")
      : data.classes[example.label];
    button.dataset.label = name;
    button.title = `test ${data.task === "segmentation" ? "scene" : "image"} ${example.index}: ${name}`;
    const canvas = document.createElement("canvas");
    paintDigit(canvas, example.digit);
    const caption = document.createElement("span");
    caption.textContent = name;
    button.append(canvas, caption);
    button.addEventListener("click", () => {
      document.querySelectorAll(".examples button.chosen").forEach((b) => b.classList.remove("chosen"));
      button.classList.add("chosen");
      clearCanvas();
      const [channels, height, width] = shapeOf(example.digit);
      setDigit(example.digit, `test ${data.task === "segmentation" ? "scene" : "image"} #${example.index}, labelled ` +
        `${name}, as stored (${channels === 3 ? "colour, " : ""}${width}×${height}).`);
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
    if (result.probabilities) showProbabilities(result.classes, result.probabilities);
    // an upload unlike the training images is said to be, with the scores (cnnlab.viz.familiarity)
    const unlike = result.familiar === false ? ` Note: ${result.unlike}.` : "";
    await setDigit(result.digit, `${name}, ${PREPARED[state.mode]}${unlike}`);
  }
}

// How an upload becomes the model's input, in each input mode (the server does it, as `cnnlab predict` does).
const PREPARED = {
  digit: "preprocessed: grayscale, white on black, cropped, scaled to 20×20 and centred by mass — exactly what " +
    "`cnnlab predict` does.",
  photo: "prepared as the run's dataset prepared its photos (resized to fill the side and centre-cropped, or " +
    "padded, as the run recorded) — exactly what `cnnlab predict` does.",
  scene: "read as `cnnlab predict` reads a scene (grayscale, a light background inverted, digits at their own " +
    "size), scaled down only if larger than the 84×64 canvas, and centred on it.",
};

// The input pane follows the source: digits are drawn, scenes drawn on a wider canvas, photos uploaded or picked.
function setInputMode(source) {
  const mode = source.task === "segmentation" ? "scene" : source.kind === "run" && source.dataset.startsWith("folder:")
    || /^cifar/.test(source.dataset) ? "photo" : "digit";
  if (mode === state.mode) return;
  state.mode = mode;
  document.body.dataset.mode = mode;
  const [width, height] = mode === "scene" ? [336, 256] : [280, 280];
  draw.width = width;
  draw.height = height;
  clearCanvas();
  draw.hidden = mode === "photo";
  $("#clear").hidden = mode === "photo";
  $("#draw-title").textContent = mode === "photo" ? "Upload a photo" : mode === "scene" ? "Draw a scene of digits" : "Draw";
  $("#draw-note").textContent = mode === "photo"
    ? "Drawing with the pen is for digits: this run was trained on colour photos. Upload a photo or pick a test photo below."
    : mode === "scene" ? "Draw one to three digits, about a third of the canvas tall; every pixel gets a class." : "";
  $("#upload-label").firstChild.textContent = mode === "photo" ? "Upload photo" : "Upload image";
  $("#prediction-title").textContent = mode === "scene" ? "Class of every pixel" : "Prediction";
  $("#class-map").hidden = $("#segment-note").hidden = mode !== "scene";
  $("#occlusion-panel").hidden = mode === "scene";  // occlusion maps one class probability of a classifier
  $("#occ-results").hidden = true;
  state.occlusion = null;
}

async function setDigit(digit, where) {
  state.digit = digit;
  paintDigit($("#seen"), digit);
  const [channels, height, width] = shapeOf(digit);
  $("#seen-size").textContent = `${width}×${height}${channels === 3 ? ", colour" : ""}`;
  $("#seen-note").textContent = where;
  if (!state.photo) paintDigit($("#conv-input"), greyRows(digit).map((row) => row.map((v) => Math.round(v * 255))));
  // an occlusion map already shown follows the input, as the layers do
  await Promise.all([analyse(), convolvePlayground(), state.occlusion ? runOcclusion() : null]);
}

async function analyse() {
  const digit = state.digit;
  const result = await latest("activations", () => postJSON("api/activations", { source: state.source.id, digit, max_maps: 32 }));
  if (!result || state.digit !== digit) return;  // the input changed meanwhile (another source's, say)
  if (String(state.classes) !== String(result.classes)) {
    $("#occ-class").replaceChildren(new Option("the predicted class", ""), ...result.classes.map((c, i) => new Option(c, i)));
  }
  state.classes = result.classes;
  if (result.task === "segmentation") showSegmentation(result);
  else showProbabilities(result.classes, result.probabilities);
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

// A segmentation's answer: the class map beside the input, with a legend of the classes found (and their pixels).
function showSegmentation(result) {
  const found = result.pixels.map((n, c) => [c, n]).filter(([c, n]) => c && n).sort((a, b) => b[1] - a[1]);
  $("#prediction").textContent = found.length ? found.map(([c]) => result.classes[c]).join(" ") : "no digit";
  const canvas = $("#class-map");
  paintClasses(canvas, result.class_map);
  canvas.dataset.classes = flat(result.class_map).join(",");
  $("#probs").replaceChildren(...result.classes.map((name, c) => {
    const item = el("li", result.pixels[c] ? "class" : "class none");
    const swatch = el("span", "swatch");
    swatch.style.background = CLASS_COLOURS[c];
    item.append(swatch, el("span", "label", name), el("span", "value", `${result.pixels[c]} px`));
    item.dataset.pixels = result.pixels[c];
    return item;
  }));
  $("#segment-note").textContent = `Every pixel gets the class with the highest score (the score maps below are ` +
    `the model's output, one per class). ${found.length ? `Found: ${found.map(([c, n]) => `${result.classes[c]} ` +
    `(${n} pixels)`).join(", ")}.` : "No digit found: every pixel is background."}`;
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
  // toBlob answers in a later task: from here until that drawing's answer is shown, the page is not final.
  const send = () => {
    pending(+1);
    draw.toBlob((blob) => { predictUpload(blob, "drawing").finally(() => pending(-1)); }, "image/png");
  };
  draw.addEventListener("pointerdown", (event) => {
    document.querySelectorAll(".examples button.chosen").forEach((b) => b.classList.remove("chosen"));
    draw.setPointerCapture(event.pointerId);
    last = point(event);
    pen.lineWidth = state.mode === "scene" ? 10 : 20; pen.lineCap = "round"; pen.lineJoin = "round"; pen.strokeStyle = "#000";
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
  const [channels, height, width] = shapeOf(state.digit);
  const input = { name: "input", type: channels === 3 ? `${width}×${height} colour image: red, green, blue` : `${width}×${height} image`,
    shape: [channels, height, width] };
  const rows = [layerRow(input, channels === 3 ? state.digit.map(flat) : [flat(state.digit)], 0, 255)];
  for (const layer of result.layers) {
    if (layer.maps) {
      rows.push(layerRow(layer, decodeMaps(layer), layer.min, layer.max));
    } else {
      rows.push(vectorRow(layer));
    }
  }
  if (result.task === "segmentation") {
    // one score map per class (the model's output); a pixel's formula is the softmax over the classes there
    const { shape, min, max } = result.scores;
    const scores = new Float32Array(Uint8Array.from(atob(result.scores.data), (c) => c.charCodeAt(0)).buffer);
    const size = shape[1] * shape[2];
    const maps = Array.from({ length: shape[0] }, (_, k) => Array.from(scores.subarray(k * size, (k + 1) * size)));
    rows.push(layerRow({ name: "scores", type: "class scores, one map per class (click: softmax over the classes of a pixel)",
      shape, formula: "softmax", labels: result.classes }, maps, min, max));
  } else {
    rows.push(vectorRow({ name: "softmax", type: "probabilities", shape: [result.probabilities.length],
      values: result.probabilities, shown: result.probabilities.length }, result.classes));
  }
  $("#network").replaceChildren(...rows);
  // An open map or value follows the input (drawing updates it live); it closes if the new model has no such one.
  const selector = state.detail?.vector ? ".strip .cell" : "canvas.map";
  const open = state.detail && $(`.layer[data-layer="${CSS.escape(state.detail.layer)}"] ${selector}[data-index="${state.detail.channel}"]`);
  if (open) open.dispatchEvent(new CustomEvent("click", { detail: "follow" }));
  else $("#detail").hidden = true;
}

// Maps and values are buttons to keyboard users too: focus one and press Enter or Space.
function clickable(element, label) {
  element.tabIndex = 0;
  element.setAttribute("role", "button");
  element.setAttribute("aria-label", label);
  element.title = label;
  element.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") { event.preventDefault(); element.click(); }
  });
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
    canvas.dataset.index = channel;
    paint(canvas, values, height, width, low, high);
    if (layer.labels) {  // a map per class: named under it
      const figure = el("figure", "labelled-map");
      figure.append(canvas, el("figcaption", "", layer.labels[channel]));
      box.append(figure);
    }
    if (layer.name !== "input") {
      clickable(canvas, `${layer.name} map ${channel}${layer.labels ? ` (${layer.labels[channel]})` : ""}`);
      canvas.addEventListener("click", (event) => {
        document.querySelectorAll(".network .chosen").forEach((c) => c.classList.remove("chosen"));
        canvas.classList.add("chosen");
        openDetail(layer, channel, values, low, high, event.detail === "follow");
      });
    }
    if (!layer.labels) box.append(canvas);
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
    cell.className = "cell";
    cell.dataset.index = i;
    cell.addEventListener("click", (event) => {
      document.querySelectorAll(".network .chosen").forEach((c) => c.classList.remove("chosen"));
      cell.classList.add("chosen");
      openVector(layer, i, event.detail === "follow");
    });
    if (labels) {
      cell.style.background = `rgba(22, 163, 74, ${value})`;  // probabilities: the greener, the likelier
    } else {
      const [r, g, b] = colourFor(value, Math.min(low, 0), high);
      cell.style.background = `rgb(${r},${g},${b})`;
    }
    clickable(cell, `${layer.name} value ${labels ? `${i} (${labels[i]})` : i}: ${value.toFixed(4)}`);
    if (labels) cell.textContent = `${labels[i]}: ${(100 * value).toFixed(0)}%`;
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

// ---- detail: one map enlarged, and the formula behind a clicked value ---------------------------------------
// Every number in a formula view comes from POST /api/formula: the layer's own input, weights and output.
function openDetail(layer, channel, values, low, high, following) {
  const [, height, width] = layer.shape;
  const same = following && state.detail?.layer === layer.name && state.detail?.channel === channel;
  const start = same ? state.detail.point : brightest(values, height, width);
  state.detail = { layer: layer.name, channel, point: start };
  const panel = $("#detail");
  panel.hidden = false;
  const label = layer.labels ? ` (class ${layer.labels[channel]})` : "";
  $("#detail-title").textContent = `${layer.name} · ${layer.type} · map ${channel}${label} · ${height}×${width}`;
  $("#detail-map").hidden = false;
  $("#detail-legend").replaceChildren(legend(low, high));
  $("#detail-note").textContent = "Click a pixel (or use the arrow keys) to see how the model computed it and " +
    "where on the input it looks. The small maps are drawn from 8-bit colours; the numbers here are the model's own.";
  const canvas = $("#detail-map");
  const pick = (y, x) => {
    state.detail.point = [y, x];
    paintEnlarged(canvas, values, height, width, low, high, [y, x]);
    showFormula(layer.formula || layer.name, [channel, y, x], layer.name);
  };
  canvas.onclick = (event) => {
    const box = canvas.getBoundingClientRect();
    pick(Math.min(height - 1, Math.floor(((event.clientY - box.top) / box.height) * height)),
      Math.min(width - 1, Math.floor(((event.clientX - box.left) / box.width) * width)));
  };
  canvas.onkeydown = (event) => {
    const moves = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };
    if (!moves[event.key]) return;
    event.preventDefault();
    const [y, x] = state.detail.point;
    pick(Math.max(0, Math.min(height - 1, y + moves[event.key][0])), Math.max(0, Math.min(width - 1, x + moves[event.key][1])));
  };
  pick(...start);
  if (!following) panel.scrollIntoView({ behavior: "smooth", block: "nearest" });
}

function openVector(layer, index, following) {
  state.detail = { layer: layer.name, channel: index, point: null, vector: true };
  $("#detail").hidden = false;
  $("#detail-title").textContent = `${layer.name} · ${layer.type} · value ${index} of ${layer.shape[0]}`;
  $("#detail-map").hidden = true;
  $("#detail-legend").replaceChildren();
  $("#detail-note").textContent = "Click another value of the row (or focus it and press Enter) to explain it.";
  showFormula(layer.name, [index]);
  if (!following) $("#detail").scrollIntoView({ behavior: "smooth", block: "nearest" });
}

function brightest(values, height, width) {
  let best = 0;
  values.forEach((v, i) => { if (v > values[best]) best = i; });
  return [Math.floor(best / width), best % width];
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
  if (mark) outline(context, mark[0] * scale, mark[1] * scale, scale, scale);
}

// An outline that reads on any colour: a dark line inside a light one.
function outline(context, top, left, height, width) {
  context.lineWidth = 3;
  context.strokeStyle = "#fde047";
  context.strokeRect(left + 1.5, top + 1.5, width - 3, height - 3);
  context.lineWidth = 1;
  context.strokeStyle = "#111";
  context.strokeRect(left + 0.5, top + 0.5, width - 1, height - 1);
}

// A 28x28 digit drawn `scale` times larger with the box [top, bottom, left, right) outlined (and, for an
// occluder, filled grey).
function digitWithBox(canvas, digit, scale, [top, bottom, left, right], filled = false) {
  const small = document.createElement("canvas");
  paintDigit(small, digit);
  const [, height, width] = shapeOf(digit);
  canvas.width = width * scale;
  canvas.height = height * scale;
  const context = canvas.getContext("2d");
  context.imageSmoothingEnabled = false;
  context.drawImage(small, 0, 0, canvas.width, canvas.height);
  if (filled) {
    context.fillStyle = "rgba(128, 128, 128, 0.85)";
    context.fillRect(left * scale, top * scale, (right - left) * scale, (bottom - top) * scale);
  }
  outline(context, top * scale, left * scale, (bottom - top) * scale, (right - left) * scale);
}

// The input with the clicked pixel's receptive field outlined (cnnlab.models.receptive computes the box).
function showField(field) {
  const canvas = $("#field-map");
  const note = $("#field-note");
  canvas.hidden = !field;
  if (!field) { note.textContent = ""; return; }
  digitWithBox(canvas, state.digit, Math.max(3, Math.round(224 / shapeOf(state.digit)[2])), field.box);
  const [top, bottom, left, right] = field.box;
  canvas.dataset.box = field.box.join(",");
  const [size] = field.size;
  note.textContent = field.whole ? "Receptive field: the whole input (a fully connected layer or a global pooling came before)."
    : `Receptive field on the input: rows ${top}–${bottom - 1}, columns ${left}–${right - 1} ` +
      `(${size}×${field.size[1]} pixels, ${field.jump[0]} apart between neighbouring outputs; clipped to the image).`;
}

const fmt = (v, digits = 4) => (v === null || v === undefined ? "pad" : Math.abs(v) >= 1e5 || (Math.abs(v) < 1e-3 && v !== 0) ? v.toExponential(3) : v.toFixed(digits));
const el = (tag, className, text) => Object.assign(document.createElement(tag), className ? { className } : {}, text !== undefined ? { textContent: text } : {});
const op = (text) => el("span", "op", text);

function numberGrid(rows, low, high, marks = []) {
  const grid = el("div", "grid");
  grid.style.gridTemplateColumns = `repeat(${rows[0].length}, auto)`;
  rows.forEach((row, r) => row.forEach((value, c) => {
    const cell = el("span", value === null ? "pad" : "", value === null ? "pad" : value.toFixed(2));
    if (value !== null) {
      const [red, green, blue] = colourFor(value, Math.min(low, -1e-9), Math.max(high, 1e-9));
      cell.style.background = `rgb(${red},${green},${blue})`;
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

// The last line of every view: the formula's result and the model's value, side by side (the tests read both).
function resultLine(answer, text) {
  const line = el("p", "total", `${text} = ${fmt(answer.result)}; the model computed ${fmt(answer.actual)}.`);
  line.id = "formula-result";
  line.dataset.result = answer.result;
  line.dataset.actual = answer.actual;
  return line;
}

async function showFormula(layerName, index, rowName = layerName) {
  const digit = state.digit;
  const answer = await latest("formula", () => postJSON("api/formula", { source: state.source.id, digit, layer: layerName, index }));
  if (!answer || state.digit !== digit) return;
  const where = index.length === 3 ? `(map ${index[0]}, row ${index[1]}, column ${index[2]})` : `(value ${index[0]})`;
  $("#detail-value").textContent = rowName !== layerName
    ? `Here ${where}: score ${fmt(answer.logits[index[0]], 6)}; its softmax over the ${answer.logits.length} classes of this pixel is ${fmt(answer.actual, 6)}.`
    : `Here ${where}: the model computed ${fmt(answer.actual, 6)}.`;
  $("#detail-value").dataset.actual = answer.actual;
  showField(answer.field);
  const top = $("#top-button");
  top.hidden = answer.kind !== "conv" || shapeOf(digit)[0] !== 1;  // the search covers single-channel test sets
  top.onclick = () => showTopActivations(layerName, index[0]);
  if (state.topFor !== `${layerName}:${index[0]}`) { $("#top-activations").replaceChildren(); state.topFor = `${layerName}:${index[0]}`; }
  const box = $("#explain");
  const title = el("h3", "", `${layerName} ${where}: ${VIEWS[answer.kind].title}`);
  box.replaceChildren(title, ...VIEWS[answer.kind].draw(answer, layerName));
  box.dataset.kind = answer.kind;
  box.dataset.layer = layerName;
  box.dataset.index = index.join(",");
}

const VIEWS = {
  conv: { title: "input patch × kernel, summed, plus the bias", draw: drawConv },
  deconv: { title: "what the input pixels spread onto this output pixel", draw: drawDeconv },
  activation: { title: "an element-wise function of the value before it", draw: (a) => [
    el("p", "formula", `f(x) = ${a.formula}` + (a.slope !== null ? `, with a = ${fmt(a.slope)}` : "")),
    resultLine(a, `x = ${fmt(a.x)} (the layer's input here), f(x)`)] },
  pool: { title: "one window of the map before it", draw: drawPool },
  batchnorm: { title: "normalized with the running statistics, then scaled and shifted", draw: (a) => [
    el("p", "formula", "y = (x − μ) / √(σ² + ε) · γ + β"),
    el("p", "formula", `= (${fmt(a.x)} − ${fmt(a.mean)}) / √(${fmt(a.var)} + ${a.eps}) · ${fmt(a.gamma)} + ${fmt(a.beta)}` +
      ` = ${fmt(a.normalized)} · ${fmt(a.gamma)} + ${fmt(a.beta)}`),
    resultLine(a, "y")] },
  lrn: { title: "divided by the activity of the neighbouring channels", draw: (a) => [
    el("p", "formula", `b = x / (k + α/n · Σ x_c²)^β over channels ${a.channels[0]}–${a.channels[a.channels.length - 1]}`),
    table(["channel", "x_c", "x_c²"], a.channels.map((c, i) => [c, fmt(a.values[i]), fmt(a.values[i] ** 2)])),
    el("p", "formula", `= ${fmt(a.x)} / (${a.k} + ${a.alpha}/${a.size} · ${fmt(a.values.reduce((s, v) => s + v * v, 0))})^${a.beta} = ${fmt(a.x)} / ${fmt(a.denominator)}`),
    resultLine(a, "b")] },
  flatten: { title: "the maps laid out as one vector", draw: (a) => [
    el("p", "formula", `Value ${a.index[0]} is map ${a.from[0]}, row ${a.from[1]}, column ${a.from[2]} of the ` +
      `${a.from_shape.join("×")} maps before it: index = (map × ${a.from_shape[1]} + row) × ${a.from_shape[2]} + column.`),
    resultLine(a, "its value")] },
  linear: { title: "a weighted sum of every value of the layer before it", draw: (a) => [
    el("p", "formula", `y = Σ w_i x_i + b over ${a.inputs} inputs; the ${a.top.length} largest contributions:`),
    table(["input i", "x_i", "w_i", "w_i · x_i"], a.top.map((t) => [t.index, fmt(t.x), fmt(t.w), fmt(t.product)])),
    el("p", "formula", `+ the other ${a.inputs - a.top.length} terms: ${fmt(a.rest)}; + bias ${fmt(a.bias)}`),
    resultLine(a, "y")] },
  softmax: { title: "exponentials, normalized to sum to 1", draw: drawSoftmax },
  residual: { title: "the block's two branches added", draw: (a) => [
    el("p", "formula", `main branch (${a.main_from}) ${fmt(a.main)} + shortcut (${a.shortcut_from}) ${fmt(a.shortcut)}`),
    resultLine(a, "sum"),
    el("p", "note", `${a.then} is applied to this sum next.`)] },
};

function drawConv(a, layerName) {
  const parts = [];
  const first = state.layers[0]?.name === layerName;
  if (first) {
    parts.push(el("p", "note", "This layer's input is the normalized image, (pixel / 255 − mean) / std, as in training."));
  }
  const shownChannels = 6;
  a.patch.slice(0, shownChannels).forEach((patch, i) => {
    const kernel = a.kernel[i];
    const products = patch.map((row, r) => row.map((v, c) => v * kernel[r][c]));
    const line = el("div", "sum");
    const [pl, ph] = range(flat(patch));
    const [kl, kh] = range(flat(kernel));
    const [ql, qh] = range(flat(products));
    const colour = first && a.patch.length === 3 ? ` (${["red", "green", "blue"][i]})` : "";
    line.append(el("span", "", `input ${a.input_channels[i]}${colour}:`), numberGrid(patch, pl, ph), op("×"),
      numberGrid(kernel, kl, kh), op("="), numberGrid(products, ql, qh), op("Σ ="), el("span", "total", a.channel_sums[i].toFixed(4)));
    parts.push(line);
  });
  const terms = a.channel_sums.map((v) => v.toFixed(3));
  const sums = terms.length > 16 ? `${terms.slice(0, 8).join(" + ")} + … (${terms.length - 8} more terms)` : terms.join(" + ");
  const drawn = a.patch.length > shownChannels ? ` (first ${shownChannels} drawn above)` : "";
  const line = resultLine(a, `Sum over ${a.patch.length} input map(s)${drawn}: ${sums} + bias ${a.bias.toFixed(3)}`);
  line.id = "formula-result";
  parts.push(line);
  return parts;
}

function drawPool(a) {
  const real = flat(a.window).filter((v) => v !== null);
  const [low, high] = range(real);
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
  return [
    el("p", "formula", `${a.op} pooling: ${formula}. Window: rows ${rows[0]}–${rows[rows.length - 1]}, columns ` +
      `${cols[0]}–${cols[cols.length - 1]} of the map before it` + (real.length < a.rows.length * a.cols.length ? " (“pad”: outside it)." : ".")),
    numberGrid(a.window, low, high, marks),
    resultLine(a, a.op === "max" ? `max` : a.op === "avg" ? `${fmt(sum)} / ${a.divisor}` : a.weight !== undefined ? `${fmt(sum)} × ${fmt(a.weight)} + ${fmt(a.bias)}` : "Σ"),
  ];
}

function drawSoftmax(a) {
  const classes = state.classes || a.logits.map((_, i) => String(i));
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

function drawDeconv(a) {
  const terms = [...a.terms].sort((p, q) => Math.abs(q.product) - Math.abs(p.product));
  const parts = [el("p", "formula", `A transposed convolution (stride ${a.stride.join("×")}, padding ${a.padding.join("×")}, ` +
    `dilation ${a.dilation.join("×")}) spreads each input pixel over the output: input (row i, column j) adds ` +
    "value × kernel at output rows i·s − p + k_y·d. This output pixel receives " +
    (terms.length ? `${terms.length} contribution(s):` : "no contribution at all (a gap between the spread kernels): only the bias."))];
  if (terms.length) {
    parts.push(table(["input map", "row", "column", "value", "kernel (ky, kx)", "weight", "value × weight"],
      terms.slice(0, 12).map((t) => [t.channel, t.y, t.x, fmt(t.value), `(${t.ky}, ${t.kx})`, fmt(t.weight), fmt(t.product)])));
    if (terms.length > 12) parts.push(el("p", "note", `… and ${terms.length - 12} smaller contributions.`));
  }
  parts.push(resultLine(a, `Σ of the contributions + bias ${fmt(a.bias)}`));
  if (a.spread) {
    const s = a.spread;
    const [kl, kh] = range(flat(s.kernel));
    const [pl, ph] = range(flat(s.products));
    const line = el("div", "sum");
    line.append(el("span", "", `How input map ${s.channel}, row ${s.y}, column ${s.x} spreads: ${fmt(s.value)} ×`),
      numberGrid(s.kernel, kl, kh), op("="), numberGrid(s.products, pl, ph),
      el("span", "note", `added to the output from row ${s.top}, column ${s.left} on, every ${a.dilation[0]} pixel(s).`));
    parts.push(line);
  }
  return parts;
}

// A colour legend: what the layer's colours mean, from its lowest to its highest value.
function legend(low, high, colours = colourFor) {
  const box = el("div", "legend");
  const canvas = document.createElement("canvas");
  const steps = 64;
  const values = Array.from({ length: steps }, (_, i) => low + ((high - low) * i) / (steps - 1));
  paint(canvas, values, 1, steps, low, high, colours);
  box.append(el("span", "", fmt(low, 2)), canvas, el("span", "", fmt(high, 2)));
  box.setAttribute("role", "img");
  box.setAttribute("aria-label", colours !== colourFor ? "colour scale: dark purple lowest, yellow highest"
    : low < 0 ? "colour scale: blue negative, white zero, red positive" : "colour scale: black lowest, white highest");
  return box;
}

// ---- top activations: a conv feature's 9 strongest test images, with deconvnet projections ------------------
async function showTopActivations(layerName, feature) {
  const box = $("#top-activations");
  const bar = el("progress");
  bar.max = 1;
  bar.removeAttribute("value");  // indeterminate until the server reports how far it is
  const note = el("p", "note", `Searching the test set for the images that excite ${layerName} map ${feature} most ` +
    "(once per model and layer; then cached)…");
  box.replaceChildren(note, bar);
  box.dataset.state = "searching";
  const source = state.source.id;
  const poll = setInterval(async () => {
    try {
      const p = await fetch(`api/top-activations/progress?source=${encodeURIComponent(source)}&layer=${encodeURIComponent(layerName)}`).then((r) => r.json());
      if (p.total) { bar.value = p.done / p.total; note.textContent = `Searching: ${p.done.toLocaleString()} of ${p.total.toLocaleString()} test images…`; }
    } catch { /* the answer below reports errors */ }
  }, 300);
  const result = await latest("top", () => api(`api/top-activations?source=${encodeURIComponent(source)}&layer=${encodeURIComponent(layerName)}&feature=${feature}`));
  clearInterval(poll);
  if (!result) { box.replaceChildren(el("p", "note warn", $("#status").textContent)); box.dataset.state = "refused"; return; }
  const tiles = result.hits.map((hit) => {
    const figure = el("figure", "hit");
    const image = document.createElement("canvas");
    digitWithBox(image, hit.image, 4, hit.box);
    const projection = document.createElement("canvas");
    const values = flat(hit.projection);
    const [low, high] = range(values);
    const extent = Math.max(-low, high) || 1;
    paint(projection, values, hit.projection.length, hit.projection[0].length, -extent, extent);
    figure.append(image, projection, el("figcaption", "", `test #${hit.index}: ${hit.value.toFixed(3)}`));
    figure.title = `test image ${hit.index}; strongest activation ${hit.value} at row ${hit.y}, column ${hit.x}`;
    return figure;
  });
  box.replaceChildren(el("p", "note", `${layerName} map ${feature}: the ${result.hits.length} of ${result.searched.toLocaleString()} test ` +
    "images with the strongest activation, each with its receptive field outlined, and beside it that one activation " +
    "projected back to the pixels by the deconvnet (red: pixels that raise it, blue: pixels that lower it)."));
  const grid = el("div", "hits");
  grid.append(...tiles);
  box.append(grid);
  box.dataset.state = "done";
}

// ---- occlusion: the class probability as a grey square hides each part of the input ------------------------
async function runOcclusion() {
  if (!state.digit) return;
  const size = Number($("#occ-size").value);
  const stride = Number($("#occ-stride").value);
  const target = $("#occ-class").value === "" ? null : Number($("#occ-class").value);
  const result = await latest("occlusion", () => postJSON("api/occlusion", { source: state.source.id, digit: state.digit, size, stride, target }));
  if (!result) { $("#occ-note").textContent = $("#status").textContent; return; }
  state.occlusion = result;
  $("#occ-results").hidden = false;
  const n = result.starts.length;
  const name = state.classes[result.target];
  $("#occ-note").textContent = `p(${name}) with nothing hidden: ${(100 * result.unoccluded).toFixed(1)}%. ` +
    `Each cell: p(${name}) with a ${size}×${size} square of the mean pixel at that place (dark: the model needs what it hides). ` +
    "Click a cell to see the square.";
  $("#occ-legend").replaceChildren(legend(0, 1, (v) => viridis(v)));
  // the square slides: the map fills in position by position, then stays
  clearInterval(state.occlusionTimer);
  let shown = 0;
  const frame = () => {
    shown = Math.min(n * n, shown + Math.max(1, Math.ceil((n * n) / 40)));
    const values = flat(result.probability).map((p, i) => (i < shown ? p : NaN));
    paint($("#occ-map"), values, n, n, 0, 1, (v) => (Number.isNaN(v) ? [229, 231, 235] : viridis(v)));
    const last = shown - 1;
    occludedInput(Math.floor(last / n), last % n);
    if (shown >= n * n) { clearInterval(state.occlusionTimer); $("#occ-map").dataset.done = "1"; }
  };
  $("#occ-map").dataset.done = "0";
  if (reducedMotion) shown = n * n;  // no sliding: the whole map at once
  frame();
  if (!reducedMotion) state.occlusionTimer = setInterval(frame, 50);
  $("#occ-top").replaceChildren(...result.top_class.flat().map((c) => el("span", c === result.target ? "same" : "", state.classes[c])));
  $("#occ-top").style.gridTemplateColumns = `repeat(${n}, 1fr)`;
}

// The input with the square at position (r, c) of the occlusion grid, and what the model says then.
function occludedInput(r, c) {
  const result = state.occlusion;
  const [top, left] = [result.starts[r], result.starts[c]];
  digitWithBox($("#occ-input"), state.digit, Math.max(3, Math.round(168 / shapeOf(state.digit)[2])), [top, top + result.size, left, left + result.size], true);
  state.occlusionAt = [r, c];
  const p = result.probability[r][c];
  $("#occ-at").textContent = `Square at rows ${top}–${top + result.size - 1}, columns ${left}–${left + result.size - 1}: ` +
    `p(${state.classes[result.target]}) = ${(100 * p).toFixed(1)}%; the model's top class is then ${state.classes[result.top_class[r][c]]}.`;
  $("#occ-at").dataset.p = p;
}

function setupOcclusion() {
  $("#occ-run").addEventListener("click", runOcclusion);
  const map = $("#occ-map");
  map.addEventListener("click", (event) => {
    if (!state.occlusion) return;
    const n = state.occlusion.starts.length;
    const box = map.getBoundingClientRect();
    clearInterval(state.occlusionTimer);
    occludedInput(Math.min(n - 1, Math.floor(((event.clientY - box.top) / box.height) * n)),
      Math.min(n - 1, Math.floor(((event.clientX - box.left) / box.width) * n)));
  });
  map.addEventListener("keydown", (event) => {  // the arrow keys move the square
    const moves = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };
    if (!state.occlusion || !moves[event.key]) return;
    event.preventDefault();
    clearInterval(state.occlusionTimer);
    const n = state.occlusion.starts.length;
    const [r, c] = state.occlusionAt;
    occludedInput(Math.max(0, Math.min(n - 1, r + moves[event.key][0])), Math.max(0, Math.min(n - 1, c + moves[event.key][1])));
  });
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

// ---- filter playground: hand-crafted or edited kernels, stride, padding and dilation -----------------------
const playground = () => ({
  k: Number($("#pg-kernel").value), s: Number($("#pg-stride").value), p: Number($("#pg-padding").value),
  d: Number($("#pg-dilation").value), n: Number($("#pg-size").value),
});

function kernelGrid(k, values) {
  const grid = $("#kernel");
  grid.style.gridTemplateColumns = `repeat(${k}, minmax(0, 3.6rem))`;
  grid.setAttribute("aria-label", `${k}x${k} kernel`);
  grid.replaceChildren(...Array.from({ length: k * k }, (_, i) => {
    const input = document.createElement("input");
    input.type = "number";
    input.step = "any";
    input.value = values[i];
    input.setAttribute("aria-label", `kernel row ${Math.floor(i / k)} column ${i % k}`);
    input.addEventListener("input", () => { $("#filter-pick").value = "custom"; convolvePlayground(); });
    return input;
  }));
}

async function setupPlayground() {
  state.filters = await api("api/filters");
  const pick = $("#filter-pick");
  pick.replaceChildren(...state.filters.map((f) => new Option(f.title, f.name)), new Option("Custom (edit the kernel)", "custom"));
  const useFilter = () => {
    const chosen = state.filters.find((f) => f.name === pick.value);
    if (!chosen) return;
    $("#pg-kernel").value = chosen.kernel.length;
    kernelGrid(chosen.kernel.length, flat(chosen.kernel).map((v) => +v.toFixed(4)));
    settingsChanged();
  };
  pick.addEventListener("change", useFilter);
  $("#pg-kernel").addEventListener("change", () => {
    // a new size starts as the identity kernel (1 in the middle), ready to edit
    const k = Number($("#pg-kernel").value);
    kernelGrid(k, Array.from({ length: k * k }, (_, i) => (i === Math.floor(k / 2) * (k + 1) ? 1 : 0)));
    pick.value = "custom";
    settingsChanged();
  });
  for (const id of ["#pg-stride", "#pg-padding", "#pg-dilation", "#pg-size"]) $(id).addEventListener("input", settingsChanged);
  pick.value = "edge-detection-2";
  useFilter();
  if (!reducedMotion) setInterval(stepAnimation, 700);  // otherwise the window stays at its first place
}

function settingsChanged() {
  convolvePlayground();
  explainArithmetic();
}

// The output size, from the server's formula, for the small animated input.
async function explainArithmetic() {
  const { k, s, p, d, n } = playground();
  if (![k, s, p, d, n].every(Number.isInteger)) return;
  const a = await latest("arithmetic", () => api(`api/conv-arithmetic?size=${n}&kernel=${k}&stride=${s}&padding=${p}&dilation=${d}`));
  if (!a) return;
  state.arithmetic = a;
  state.step = 0;
  const result = $("#pg-output");
  result.dataset.output = a.output;
  result.dataset.valid = a.valid;
  result.dataset.exact = a.exact;
  result.textContent = a.valid ? `output = ⌊${a.numerator} / ${s}⌋ + 1 = ${a.output} (so ${a.output}×${a.output})` : "no output";
  $("#pg-formula").textContent = `(n + 2p − d(k−1) − 1) / s + 1 = ${a.formula}`;
  const why = $("#pg-why");
  why.textContent = a.valid && a.exact ? "The division is exact: every window fits, and every input pixel is read." : a.reason;
  why.classList.toggle("warn", !(a.valid && a.exact));
  stepAnimation();
}

// One frame of the sliding window: the padded n×n input, the window's (dilated) cells, and the output cell.
function stepAnimation() {
  const a = state.arithmetic;
  const canvas = $("#pg-anim");
  if (!a || !canvas) return;
  const { n, p, k, s, d } = { n: a.input, p: a.padding, k: a.kernel, s: a.stride, d: a.dilation };
  const side = n + 2 * p;
  const cell = Math.max(8, Math.floor(200 / Math.max(side, 1)));
  const gap = 24;
  const outCells = a.valid ? a.output : 0;
  canvas.width = side * cell + gap + Math.max(outCells, 1) * cell + 2;
  canvas.height = Math.max(side, outCells, 1) * cell + 2;
  const context = canvas.getContext("2d");
  context.clearRect(0, 0, canvas.width, canvas.height);
  const position = outCells ? state.step % (outCells * outCells) : 0;
  const [oy, ox] = [Math.floor(position / Math.max(outCells, 1)), position % Math.max(outCells, 1)];
  const unread = a.valid ? a.dropped : 0;
  for (let r = 0; r < side; r++) {
    for (let c = 0; c < side; c++) {
      const padding = r < p || c < p || r >= n + p || c >= n + p;
      const neverRead = r >= side - unread || c >= side - unread;
      context.fillStyle = neverRead ? "#fecaca" : padding ? "#e5e7eb" : "#ffffff";
      context.fillRect(c * cell + 1, r * cell + 1, cell - 1, cell - 1);
    }
  }
  if (outCells) {
    for (let u = 0; u < k; u++) {
      for (let v = 0; v < k; v++) {
        context.fillStyle = "rgba(33, 102, 172, 0.75)";
        context.fillRect((ox * s + v * d) * cell + 1, (oy * s + u * d) * cell + 1, cell - 1, cell - 1);
      }
    }
    const left = side * cell + gap;
    for (let r = 0; r < outCells; r++) {
      for (let c = 0; c < outCells; c++) {
        context.fillStyle = r === oy && c === ox ? "rgba(33, 102, 172, 0.75)" : "#ffffff";
        context.fillRect(left + c * cell + 1, r * cell + 1, cell - 1, cell - 1);
      }
    }
    context.strokeStyle = "#5b6475";
    context.strokeRect(left + 0.5, 0.5, outCells * cell, outCells * cell);
  }
  context.strokeStyle = "#5b6475";
  context.strokeRect(0.5, 0.5, side * cell, side * cell);
  state.step = (state.step || 0) + 1;
}

// A photo for the playground, decoded by the browser: grayscale (luminance), at most PHOTO_SIDE pixels a side,
// in steps of 1/255 so that the picture shown is exactly the image convolved.
const PHOTO_SIDE = 128;
async function usePhoto(file) {
  let bitmap;
  try {
    bitmap = await createImageBitmap(file);
  } catch {
    setStatus(`${file.name}: not an image the browser can read`, "photo");
    return;
  }
  const scale = Math.min(1, PHOTO_SIDE / Math.max(bitmap.width, bitmap.height));
  const [width, height] = [Math.max(1, Math.round(bitmap.width * scale)), Math.max(1, Math.round(bitmap.height * scale))];
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  const context = canvas.getContext("2d");
  context.drawImage(bitmap, 0, 0, width, height);
  const rgba = context.getImageData(0, 0, width, height).data;
  const rows = Array.from({ length: height }, (_, r) => Array.from({ length: width }, (_, c) => {
    const i = 4 * (r * width + c);
    return Math.round(0.299 * rgba[i] + 0.587 * rgba[i + 1] + 0.114 * rgba[i + 2]) / 255;
  }));
  state.photo = { name: file.name, rows };
  paint($("#conv-input"), flat(rows), height, width, 0, 1);
  $("#conv-input-name").textContent = `${file.name}, ${width}×${height}`;
  $("#pg-digit").hidden = false;
  if (statusKind === "photo") setStatus("");
  convolvePlayground();
}

function setupPhoto() {
  $("#pg-photo").addEventListener("change", (event) => {
    const file = event.target.files[0];
    if (file) usePhoto(file);
    event.target.value = "";
  });
  $("#pg-digit").addEventListener("click", () => {
    state.photo = null;
    $("#pg-digit").hidden = true;
    $("#conv-input-name").textContent = "the model's input";
    if (state.digit) paintDigit($("#conv-input"), greyRows(state.digit).map((row) => row.map((v) => Math.round(v * 255))));
    convolvePlayground();
  });
}

async function convolvePlayground() {
  if (!state.digit && !state.photo) return;
  const { k, s, p, d } = playground();
  const values = Array.from($("#kernel").children, (input) => Number(input.value));
  if (values.length !== k * k || values.some((v) => !Number.isFinite(v)) || ![s, p, d].every(Number.isInteger)) return;
  const kernel = Array.from({ length: k }, (_, r) => values.slice(r * k, (r + 1) * k));
  const image = state.photo ? state.photo.rows : greyRows(state.digit);
  const result = await latest("convolve", () => postJSON("api/convolve", { image, kernel, padding: p, stride: s, dilation: d }));
  if (!result) {
    if (statusKind === "convolve") {  // refused: the reason goes where the output size would be
      $("#conv-size").textContent = $("#status").textContent;
      $("#conv-output").dataset.range = "";
    }
    return;
  }
  const [height, width] = result.shape;
  const out = flat(result.output);
  const [low, high] = range(out);
  paint($("#conv-output"), out, height, width, low, high);
  $("#conv-output").dataset.range = `${low},${high}`;
  $("#conv-output").dataset.shape = result.shape.join(",");
  $("#conv-range").textContent = `values ${low.toFixed(2)} to ${high.toFixed(2)}`;
  // one line per axis (a photo need not be square)
  $("#conv-size").textContent = result.arithmetic.map((a, axis) => `${axis ? "columns" : "rows"}: ${a.input} → ` +
    `${a.formula} = ${a.output}` + (a.exact ? "" : ` (rounded down: ${a.reason})`)).join("; ");
}

// ---- start -----------------------------------------------------------------------------------------------
setupDrawing();
setupOcclusion();
setupPhoto();
Promise.all([loadSources(), setupPlayground()])
  .then(() => { document.querySelector(".examples button")?.click(); })  // start with something to look at
  .then(() => { document.body.dataset.ready = "1"; })
  .catch((err) => setStatus(err.message));
