// The explorer page: every number comes from the JSON API (see /openapi.json); the modules only draw it.
import { api, Channel, floatsOf, pending, postJSON } from "./api.js";
import { context2d, el, enlarged, flat, fmt, legend, outline, paint, range, scaleFor, viridis } from "./paint.js";
import { Network, paintVector } from "./network.js";
import { setupPlayground } from "./playground.js";
import { VIEWS } from "./views.js";

const $ = (selector) => document.querySelector(selector);
const reducedMotion = window.matchMedia("(prefers-reduced-motion: reduce)").matches;
const state = { sources: [], source: null, digit: null, layers: [], examplesStart: 0, dataset: null };
// one request in flight per endpoint (api.js): a newer one aborts or waits
const channels = Object.fromEntries(["predict", "activations", "formula", "occlusion", "top", "kernels"].map((k) => [k, new Channel()]));

// ---- errors --------------------------------------------------------------------------------------------------
// The status line shows the last error and which kind of request made it: only a later success of the same
// kind clears it (an answer to an earlier drawing's activations must not wipe a refused request's reason). An
// upload's error shows beside the upload instead, until the next thing the user does.
let statusKind = null;
function setStatus(message, kind = null) {
  $("#status").textContent = message || "";
  statusKind = message ? kind : null;
}
const report = (kind, err) => (err ? setStatus(err.message, kind) : statusKind === kind && setStatus(""));
function uploadError(message) {
  $("#upload-error").textContent = message || "";
  $("#upload-error").hidden = !message;
}

// A request through its endpoint's channel: its answer, or null when it was refused (the reason shown) or a
// newer request made it stale.
async function call(kind, make, mode = "replace") {
  try {
    const answer = await channels[kind].run(make, mode);
    if (answer && statusKind === kind) setStatus("");
    return answer;
  } catch (err) {
    setStatus(err.message, kind);
    return null;
  }
}

// ---- inputs ----------------------------------------------------------------------------------------------
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

// ---- sources ---------------------------------------------------------------------------------------------
async function loadSources() {
  state.sources = await api("api/sources");  // runs first, the newest first
  const select = $("#source");
  select.replaceChildren(...state.sources.map((s) => {
    const option = document.createElement("option");
    option.value = s.id;
    option.textContent = s.kind === "file" ? `${s.name} (your model${s.random_weights ? ", initial weights" : ""})`
      : s.kind !== "run" ? `${s.name} (untrained, random weights)`
      : s.damaged ? `${s.name} (damaged: ${s.damaged})`
      : `${s.name} (${s.model}, ${s.dataset}${s.measure?.text ? `, ${s.measure.text}` : ""})`;
    return option;
  }));
  select.addEventListener("change", () => { uploadError(null); chooseSource(select.value); });
  await chooseSource(state.sources[0].id);
}

async function chooseSource(id) {
  const started = performance.now();
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
      (source.measure?.text ? `, ${source.measure.name} ${source.measure.text}.` : ".");
  // a folder dataset the server does not read: said here, and no test images to pick
  if (source.dataset_note) { note.classList.add("warn"); note.textContent += ` Test images: ${source.dataset_note}.`; }
  setInputMode(source);
  closeDetail(false);
  state.expanded.clear();
  const work = [loadLearnedFilters()];
  if (state.dataset !== source.dataset) {
    state.dataset = source.dataset;
    state.examplesStart = 0;
    state.digit = null;  // another dataset's input would not fit this model
    if (source.dataset_note) $("#examples").replaceChildren();
    else work.push(loadExamples().then(() => {
      if (document.body.dataset.ready === "1") document.querySelector(".examples button")?.click();
    }));
  } else if (state.digit) {
    work.push(analyse());
  }
  await Promise.all(work);
  // the new model's answer is on the screen (the tests read how long the switch took)
  requestAnimationFrame(() => { document.body.dataset.switchMs = (performance.now() - started).toFixed(1); });
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
      : data.classes[example.label.class ?? example.label];  // a localization's label: {class, box}
    button.dataset.label = name;
    const kind = data.task === "segmentation" ? "scene" : "image";
    button.setAttribute("aria-label", `test ${kind} ${example.index}: ${name}`);
    button.title = `test ${kind} ${example.index}: ${name}`;
    const canvas = document.createElement("canvas");
    paintDigit(canvas, example.digit);
    button.append(canvas, el("span", "", name));
    button.addEventListener("click", () => {
      uploadError(null);
      document.querySelectorAll(".examples button.chosen").forEach((b) => b.classList.remove("chosen"));
      button.classList.add("chosen");
      clearCanvas();
      const [channels, height, width] = shapeOf(example.digit);
      setDigit(example.digit, `test ${kind} #${example.index}, labelled ${name}, as stored (${channels === 3 ? "colour, " : ""}${width}×${height}).`);
    });
    return button;
  }));
  state.examplesStart = (state.examplesStart + 12) % data.total;
}

// How an upload becomes the model's input, in each input mode (the server does it, as `cnnlab predict` does).
const PREPARED = {
  digit: "preprocessed: the paper's lighting estimated around the ink and taken off, grayscale, white on black, " +
    "cropped, scaled to 20×20 and centred by mass — exactly what `cnnlab predict` does.",
  photo: "prepared as the run's dataset prepared its photos (resized to fill the side and centre-cropped, or " +
    "padded, as the run recorded) — exactly what `cnnlab predict` does.",
  scene: "read as `cnnlab predict` reads a scene (grayscale, a light background inverted, digits at their own " +
    "size), scaled down only if larger than the 84×64 canvas, and centred on it.",
  box: "read as `cnnlab predict` reads it (grayscale, a light background inverted, the digit at its own size), " +
    "scaled down only if larger than the 64×64 canvas, and centred on it.",
};

// An image to classify (a drawing or an upload): the server prepares it and answers with every layer at once.
// A drawing's live updates wait their turn ("queue"); anything else replaces what is in flight.
async function predict(blob, name, { mode = "replace", final = true } = {}) {
  const form = new FormData();
  form.append("image", blob, name);
  form.append("source", state.source.id);
  form.append("layers", "true");
  if (name !== "drawing") form.append("familiarity", "true");  // an upload: is it like the training images?
  const source = state.source;
  let failed = null;
  let answer;
  try {
    answer = await channels.predict.run((signal) => {
      const asked = performance.now();
      return api("api/predict", { method: "POST", body: form, signal }).then((body) => {
        state.answerTime = performance.now() - asked;
        return body;
      });
    }, mode);
  } catch (err) {
    failed = err;
  }
  if (state.source !== source) return false;  // another model was chosen meanwhile
  if (failed) {
    if (name === "drawing") setStatus(failed.message, "predict");
    else uploadError(failed.message);
    return false;
  }
  if (!answer) return false;
  if (statusKind === "predict") setStatus("");
  // an upload unlike the training images is said to be, with the scores (cnnlab.viz.familiarity)
  const unlike = answer.familiar === false ? ` Note: ${answer.unlike}.` : "";
  await setDigit(answer.digit, `${name}, ${PREPARED[state.mode]}${unlike}`, answer, final);
  return true;
}

// The input pane follows the source: digits are drawn, scenes drawn on a wider canvas, photos uploaded or picked.
function setInputMode(source) {
  const mode = source.task === "segmentation" ? "scene" : source.task === "localization" ? "box"
    : source.kind === "run" && source.dataset.startsWith("folder:") || /^cifar/.test(source.dataset) ? "photo" : "digit";
  if (mode === state.mode) return;
  state.mode = mode;
  document.body.dataset.mode = mode;
  const [width, height] = mode === "scene" ? [336, 256] : mode === "box" ? [256, 256] : [280, 280];
  draw.width = width;
  draw.height = height;
  clearCanvas();
  draw.hidden = mode === "photo";
  $("#clear").hidden = mode === "photo";
  $("#draw-title").textContent = mode === "photo" ? "Upload a photo" : mode === "scene" ? "Draw a scene of digits"
    : mode === "box" ? "Draw a digit anywhere" : "Draw";
  $("#draw-note").textContent = mode === "photo"
    ? "Drawing with the pen is for digits: this run was trained on colour photos. Upload a photo or pick a test photo below."
    : mode === "scene" ? "Draw one to three digits, about a third of the canvas tall; every pixel gets a class."
    : mode === "box" ? "Draw one digit, small or large, anywhere: the box the model finds is drawn on what it sees."
    : "";
  $("#upload-button").textContent = mode === "photo" ? "Upload photo" : "Upload image";
  $("#prediction-title").textContent = mode === "scene" ? "Class of every pixel" : "Prediction";
  $("#class-map").hidden = $("#segment-note").hidden = mode !== "scene";
  $("#occlusion-panel").hidden = mode === "scene";  // occlusion maps one class probability of a classifier
  $("#occ-results").hidden = true;
  state.occlusion = null;
}

// A new input: shown as the model sees it, and every view follows it. `answer`: the layers already computed
// with it (a drawing's or an upload's); `final`: not a stroke still being drawn (the views that cost a request
// of their own wait for the stroke's end).
async function setDigit(digit, where, answer = null, final = true) {
  state.digit = digit;
  paintDigit($("#seen"), digit);
  const [channels, height, width] = shapeOf(digit);
  $("#seen-size").textContent = `${width}×${height}${channels === 3 ? ", colour" : ""}`;
  $("#seen-note").textContent = where;
  if (!state.photo) paintDigit($("#conv-input"), greyRows(digit).map((row) => row.map((v) => Math.round(v * 255))));
  const shown = answer ? Promise.resolve(showAnswer(answer, final)) : analyse();
  if (final) {  // the views that ask the server themselves; the answer is shown without waiting for them
    playground.convolve();
    if (state.occlusion) runOcclusion();  // an occlusion map already shown follows the input, as the layers do
  }
  return shown;
}

async function analyse() {
  const digit = state.digit;
  const result = await call("activations", (signal) => postJSON("api/activations", { source: state.source.id, digit, max_maps: 32 }, signal));
  if (!result || state.digit !== digit) return;  // the input changed meanwhile (another source's, say)
  showAnswer(result, true);
}

function showAnswer(result, final) {
  if (String(state.classes) !== String(result.classes)) {
    $("#occ-class").replaceChildren(new Option("the predicted class", ""), ...result.classes.map((c, i) => new Option(c, i)));
  }
  state.classes = result.classes;
  if (result.task === "segmentation") showSegmentation(result, final);
  else showProbabilities(result.classes, result.probabilities, final);
  if (result.box) drawBox($("#seen"), result.box, result.prediction);
  showNetwork(result, final);
}

function showProbabilities(classes, probabilities, final) {
  const best = probabilities.indexOf(Math.max(...probabilities));
  $("#prediction").textContent = classes[best];
  $("#probs").replaceChildren(...classes.map((name, i) => {
    const item = el("li", i === best ? "top" : "");
    item.dataset.p = probabilities[i];
    const bar = el("span", "bar");
    const fill = el("span");
    fill.style.width = `${100 * probabilities[i]}%`;
    bar.append(fill);
    item.append(el("span", "label", name), bar, el("span", "value", `${(100 * probabilities[i]).toFixed(1)}%`));
    return item;
  }));
  if (final) announce(`Prediction: ${classes[best]}, ${(100 * probabilities[best]).toFixed(1)} percent.`);
}

// The answer, told to screen readers once it is final (not at every update of a stroke).
function announce(text) {
  $("#announce").textContent = text;
}

// A localization's box, [left, top, right, bottom] as fractions of the input, over the input the model saw.
function drawBox(canvas, [left, top, right, bottom], label) {
  const pen = canvas.getContext("2d");
  pen.strokeStyle = "#ff3b30";
  pen.lineWidth = 1;
  pen.strokeRect(left * canvas.width + 0.5, top * canvas.height + 0.5, (right - left) * canvas.width - 1,
    (bottom - top) * canvas.height - 1);
  canvas.dataset.box = [left, top, right, bottom].map((v) => v.toFixed(4)).join(",");
  canvas.title = `${label} in the box drawn`;
}

// A segmentation's answer: the class map beside the input, with a legend of the classes found (and their pixels).
function showSegmentation(result, final) {
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
  const text = found.length ? `Found: ${found.map(([c, n]) => `${result.classes[c]} (${n} pixels)`).join(", ")}.`
    : "No digit found: every pixel is background.";
  $("#segment-note").textContent = "Every pixel gets the class with the highest score (the score maps below are " +
    `the model's output, one per class). ${text}`;
  if (final) announce(text);
}

// ---- drawing ---------------------------------------------------------------------------------------------
const draw = $("#draw");
const pen = context2d(draw);
function clearCanvas() {
  pen.fillStyle = "#fff";
  pen.fillRect(0, 0, draw.width, draw.height);
  draw.dataset.ink = "0";
}

// While drawing, the page sends the canvas at most every LIVE_MS (or twice the last answer's time, for a deep
// model: the server stays free half the time, ready for the stroke's end) and only when the answer before it has
// arrived (the predict channel queues it); the stroke's end is always sent.
const LIVE_MS = 400;
function setupDrawing() {
  clearCanvas();
  let last = null;
  let sentAt = 0;
  let timer = null;
  const point = (event) => {
    const box = draw.getBoundingClientRect();
    return [(event.clientX - box.left) * (draw.width / box.width), (event.clientY - box.top) * (draw.height / box.height)];
  };
  // The drawing travels at half size: a 140-pixel digit is seven times what the 20-pixel box needs, and the
  // server prepares a quarter of the pixels. toBlob answers in a later task: from here until that drawing's
  // answer is shown, the page is not final.
  const half = document.createElement("canvas");
  const send = (final) => {
    sentAt = performance.now();
    pending(+1);
    [half.width, half.height] = [draw.width / 2, draw.height / 2];
    context2d(half).drawImage(draw, 0, 0, half.width, half.height);
    half.toBlob((blob) => {
      predict(blob, "drawing", { mode: "queue", final }).then((shown) => {
        // pointer-up to painted: the frame that shows the answer is painted right after its animation-frame
        // callbacks; a message posted from there arrives once it is (the tests read the time)
        if (final && shown) requestAnimationFrame(() => {
          const after = new MessageChannel();
          after.port1.onmessage = () => {
            document.body.dataset.answerMs = (performance.now() - Number(draw.dataset.upAt)).toFixed(1);
          };
          after.port2.postMessage(null);
        });
      }).finally(() => pending(-1));
    }, "image/png");
  };
  draw.addEventListener("pointerdown", (event) => {
    uploadError(null);
    document.querySelectorAll(".examples button.chosen").forEach((b) => b.classList.remove("chosen"));
    draw.setPointerCapture(event.pointerId);
    last = point(event);
    pen.lineWidth = state.mode === "scene" || state.mode === "box" ? 10 : 20; pen.lineCap = "round"; pen.lineJoin = "round"; pen.strokeStyle = "#000";
  });
  draw.addEventListener("pointermove", (event) => {
    if (!last) return;
    const next = point(event);
    if (next[0] === last[0] && next[1] === last[1]) return;  // no line yet: nothing to send
    pen.beginPath(); pen.moveTo(...last); pen.lineTo(...next); pen.stroke();
    last = next;
    draw.dataset.ink = "1";
    const every = Math.max(LIVE_MS, 2 * (state.answerTime || 0));
    if (!timer) timer = setTimeout(() => { timer = null; if (last) send(false); }, Math.max(0, every - (performance.now() - sentAt)));
  });
  const end = () => {
    if (!last) return;
    last = null;
    clearTimeout(timer);  // the final send below supersedes a live one
    timer = null;
    draw.dataset.upAt = performance.now();
    if (draw.dataset.ink === "1") send(true);
  };
  draw.addEventListener("pointerup", end);
  draw.addEventListener("pointercancel", end);
  $("#clear").addEventListener("click", () => { uploadError(null); clearCanvas(); });
  $("#upload-button").addEventListener("click", () => $("#upload").click());
  $("#upload").addEventListener("change", async (event) => {
    const file = event.target.files[0];
    event.target.value = "";
    if (!file) return;
    uploadError(null);
    if (await predict(file, file.name)) showUpload(file);
  });
  $("#more-examples").addEventListener("click", loadExamples);
}

// An upload replaces the drawing: the canvas shows the uploaded picture (fitted, on white), and a stroke drawn
// next is drawn on it.
async function showUpload(file) {
  if (state.mode === "photo") return;
  let bitmap;
  try {
    bitmap = await createImageBitmap(file);
  } catch {
    return;  // the server read it; the browser cannot draw it (a format it lacks): the canvas is just cleared
  } finally {
    clearCanvas();
  }
  const scale = Math.min(draw.width / bitmap.width, draw.height / bitmap.height);
  const [width, height] = [bitmap.width * scale, bitmap.height * scale];
  pen.drawImage(bitmap, (draw.width - width) / 2, (draw.height - height) / 2, width, height);
  draw.dataset.ink = "1";
  draw.dataset.upload = file.name;
}

// ---- network overview ------------------------------------------------------------------------------------
const network = new Network($("#network"), (layer, index, element) => openUnit(layer, index, element));
// A summarized row opened: up to MAX_ROW_MAPS of its maps, asked again for each new input while it stays open.
const MAX_ROW_MAPS = 256;
state.expanded = new Set();
network.expand = (name) => { state.expanded.add(name); expandRow(name); };
async function expandRow(name) {
  const digit = state.digit;
  channels[`row ${name}`] ??= new Channel();  // one request in flight per opened row
  const answer = await call(`row ${name}`, (signal) => postJSON("api/activations",
    { source: state.source.id, digit, layer: name, max_maps: MAX_ROW_MAPS }, signal));
  if (answer && state.digit === digit) network.replace(answer.layers[0]);
}

function showNetwork(result, final) {
  state.layers = result.layers;
  const [channels, height, width] = shapeOf(state.digit);
  const input = { name: "input", type: channels === 3 ? `${width}×${height} colour image: red, green, blue` : `${width}×${height} image`,
    shape: [channels, height, width], maps: Uint8Array.from(flat(state.digit)), min: 0, max: 255, shown: channels };
  const rows = [input, ...result.layers];
  if (result.task === "segmentation") {
    // one score map per class (the model's output); a pixel's formula is the softmax over the classes there
    const { shape, min, max } = result.scores;
    const scores = floatsOf(result.scores);
    const size = shape[1] * shape[2];
    rows.push({ name: "scores", type: "class scores, one map per class (open one: the softmax of a pixel over the classes)",
      shape, formula: "softmax", labels: result.classes, min, max, shown: shape[0], maps: true,
      floats: Array.from({ length: shape[0] }, (_, k) => scores.subarray(k * size, (k + 1) * size)),
      reads: [result.layers.at(-1).name], links: { type: "same" } });
  } else {
    rows.push({ name: "softmax", type: "probabilities", shape: [result.probabilities.length], values: result.probabilities,
      shown: result.probabilities.length, labels: result.classes, reads: [result.layers.at(-1).name], links: { type: "same" } });
  }
  const focused = document.activeElement?.closest?.(".layer")?.dataset.layer;
  network.show(rows, final);
  if (final) state.expanded.forEach((name) => { if (rows.some((r) => r.name === name)) expandRow(name); });
  if (focused) network.unit(focused, 0);  // a stroke's update must not lose the keyboard's place
  // An open view follows the input (at the stroke's end); it closes if the new model has no such unit.
  if (state.detail && final) {
    const row = rows.find((r) => r.name === state.detail.row);
    if (row && state.detail.index < (row.shown ?? row.values?.length ?? 0)) {
      network.choose(row.name, state.detail.index);
      showFormula(row, state.detail.index, state.detail.point);
    } else {
      closeDetail(false);
    }
  } else if (state.detail) {
    network.choose(state.detail.row, state.detail.index);
  }
}

// ---- detail: one unit opened, and the formula behind it ---------------------------------------------------
// Opening moves the keyboard into the view (its enlarged map, or its first control); Escape brings it back to
// the unit that opened it.
function openUnit(layer, index, opener) {
  state.detail = { row: layer.name, index, point: null, opener };
  network.choose(layer.name, index);
  $("#detail").hidden = false;
  showFormula(layer, index, null).then(() => {
    const target = $("#detail-map").hidden ? $("#detail-title") : $("#detail-map");
    target.focus({ preventScroll: true });
    $("#detail").scrollIntoView({ behavior: reducedMotion ? "auto" : "smooth", block: "nearest" });
  });
}

function closeDetail(refocus = true) {
  const detail = state.detail;
  state.detail = null;
  state.closeView?.();
  $("#detail").hidden = true;
  network.chosen = null;
  if (refocus && detail) {  // the unit that opened the view (drawn again since, if the page was resized)
    const again = detail.opener?.isConnected ? detail.opener : network.unit(detail.row, detail.index);
    again?.focus();
  }
}

async function showFormula(layer, index, point) {
  const digit = state.digit;
  const vector = !layer.maps;
  const formulaLayer = layer.formula || layer.name;
  const wanted = vector ? [index] : point ? [index, ...point] : [index];  // [map] alone: the server picks where it opens
  const answer = await call("formula", (signal) => postJSON("api/formula",
    { source: state.source.id, digit, layer: formulaLayer, index: wanted }, signal));
  if (!answer || state.digit !== digit || state.detail?.row !== layer.name || state.detail?.index !== index) return;
  state.closeView?.();
  const closers = [];
  state.closeView = () => closers.forEach((close) => close());
  if (!vector) state.detail.point = answer.index.slice(-2);
  const where = vector ? `(value ${index})` : `(map ${index}, row ${answer.index.at(-2)}, column ${answer.index.at(-1)})`;
  const label = layer.labels ? ` (class ${layer.labels[index]})` : "";
  $("#detail-title").textContent = `${layer.name} · ${layer.type} · ${vector ? `value ${index} of ${layer.shape[0]}${label}` :
    `map ${index}${label} · ${layer.shape[1]}×${layer.shape[2]}`}`;
  $("#detail-value").textContent = formulaLayer !== layer.name
    ? `Here ${where}: score ${fmt(answer.logits[index], 6)}; its softmax over the ${answer.logits.length} classes of this pixel is ${fmt(answer.actual, 6)}.`
    : `Here ${where}: the model computed ${fmt(answer.actual, 6)}.`;
  $("#detail-value").dataset.actual = answer.actual;
  if (vector) showVector(layer, index); else showMap(layer, answer);
  showField(answer.field);
  const top = $("#top-button");
  top.hidden = answer.kind !== "conv" || shapeOf(digit)[0] !== 1;  // the search covers single-channel test sets
  top.onclick = () => showTopActivations(formulaLayer, index);
  if (state.topFor !== `${formulaLayer}:${index}`) { $("#top-activations").replaceChildren(); state.topFor = `${formulaLayer}:${index}`; }
  const box = $("#explain");
  const view = {
    classes: state.classes, first: state.layers[0]?.name === formulaLayer,
    pick: (y, x) => pickPixel(layer, y, x), onClose: (close) => closers.push(close),
  };
  box.replaceChildren(el("h3", "", `${formulaLayer} ${where}: ${VIEWS[answer.kind].title}`), ...VIEWS[answer.kind].draw(answer, view));
  box.dataset.kind = answer.kind;
  box.dataset.layer = formulaLayer;
  box.dataset.index = answer.index.join(",");
}

function pickPixel(layer, y, x) {
  if (!state.detail) return;
  state.detail.point = [y, x];
  showFormula(layer, state.detail.index, [y, x]);
}

// The opened map, enlarged, from the exact values the formula's answer carries, with the pixel outlined; click
// a pixel or move with the arrow keys.
function showMap(layer, answer) {
  const canvas = $("#detail-map");
  canvas.hidden = false;
  const packed = answer.maps.after;
  const values = floatsOf(packed);
  const [height, width] = packed.shape.slice(-2);
  const [low, high] = layer.min !== undefined && !layer.floats ? [Math.min(layer.min, ...range(values)), Math.max(layer.max, range(values)[1])]
    : range(values);
  const scale = scaleFor(height, width, 280);
  const [y, x] = answer.index.slice(-2);
  const context = enlarged(canvas, values, height, width, low, high, scale);
  outline(context, y * scale, x * scale, scale, scale);
  $("#detail-legend").replaceChildren(legend(low, high));
  $("#detail-note").textContent = "Click a pixel (or use the arrow keys) to see how the model computed it and where on " +
    "the input it looks; Escape goes back to the overview.";
  canvas.setAttribute("aria-label", `${layer.name} map ${answer.index[0]} enlarged, ${height}×${width}: row ${y}, column ${x} ` +
    `is ${fmt(answer.actual)}; the arrow keys move the pixel`);
  canvas.onclick = (event) => {
    const box = canvas.getBoundingClientRect();
    pickPixel(layer, Math.min(height - 1, Math.floor(((event.clientY - box.top) / box.height) * height)),
      Math.min(width - 1, Math.floor(((event.clientX - box.left) / box.width) * width)));
  };
  canvas.onkeydown = (event) => {
    const moves = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };
    if (!moves[event.key] || !state.detail?.point) return;
    event.preventDefault();
    const [py, px] = state.detail.point;
    pickPixel(layer, Math.max(0, Math.min(height - 1, py + moves[event.key][0])), Math.max(0, Math.min(width - 1, px + moves[event.key][1])));
  };
}

// An opened vector: its values as cells (24 pixels on a phone: a finger's size), the chosen one marked; class
// vectors are already legible in the overview.
function showVector(layer, index) {
  const canvas = $("#detail-map");
  canvas.hidden = Boolean(layer.labels);
  $("#detail-legend").replaceChildren();
  $("#detail-note").textContent = "Pick another value (click it, or the arrow keys) to explain it; Escape goes back to the overview.";
  if (layer.labels) return;
  const [low, high] = range(layer.values);
  const cell = window.matchMedia("(max-width: 600px)").matches ? 24 : 14;  // a finger's size on a phone
  const columns = Math.max(1, Math.floor(Math.min(280, $("#detail .pane").clientWidth || 280) / cell));
  paintVector(canvas, layer.values, cell, columns, low, high, { [index]: "#1f6feb" });
  canvas.setAttribute("aria-label", `${layer.name}, ${layer.values.length} values: value ${index} is ${fmt(layer.values[index])}; ` +
    "the arrow keys move");
  const go = (i) => {
    i = Math.max(0, Math.min(layer.values.length - 1, i));
    state.detail.index = i;
    network.choose(layer.name, i);
    showFormula(layer, i, null);
  };
  canvas.onclick = (event) => {
    const box = canvas.getBoundingClientRect();
    go(Math.floor((event.clientY - box.top) / cell) * columns + Math.floor((event.clientX - box.left) / cell));
  };
  canvas.onkeydown = (event) => {
    const step = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: columns, ArrowUp: -columns }[event.key];
    if (!step) return;
    event.preventDefault();
    go(state.detail.index + step);
  };
}

// A digit drawn `scale` times larger with the box [top, bottom, left, right) outlined (and, for an
// occluder, filled grey).
function digitWithBox(canvas, digit, scale, [top, bottom, left, right], filled = false) {
  const small = document.createElement("canvas");
  paintDigit(small, digit);
  const [, height, width] = shapeOf(digit);
  canvas.width = width * scale;
  canvas.height = height * scale;
  const context = context2d(canvas);
  context.imageSmoothingEnabled = false;
  context.drawImage(small, 0, 0, canvas.width, canvas.height);
  if (filled) {
    context.fillStyle = "rgba(128, 128, 128, 0.85)";
    context.fillRect(left * scale, top * scale, (right - left) * scale, (bottom - top) * scale);
  }
  outline(context, top * scale, left * scale, (bottom - top) * scale, (right - left) * scale);
}

// The input with the opened pixel's receptive field outlined (cnnlab.models.receptive computes the box).
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

function setupDetail() {
  $("#detail").addEventListener("keydown", (event) => {
    if (event.key === "Escape") { event.preventDefault(); closeDetail(); }
  });
  $("#detail-close").addEventListener("click", () => closeDetail());
}

// ---- top activations: a conv feature's 9 strongest test images, with deconvnet projections ------------------
async function showTopActivations(layerName, feature) {
  const box = $("#top-activations");
  const bar = el("progress");
  bar.max = 1;
  bar.removeAttribute("value");  // indeterminate until the server reports how far it is
  bar.setAttribute("aria-label", "search progress");
  const note = el("p", "note", `Searching the test set for the images that excite ${layerName} map ${feature} most ` +
    "(once per model and layer; then cached)…");
  box.replaceChildren(note, bar);
  box.dataset.state = "searching";
  const source = state.source.id;
  const started = performance.now();
  const poll = setInterval(async () => {
    try {
      const p = await fetch(`api/top-activations/progress?source=${encodeURIComponent(source)}&layer=${encodeURIComponent(layerName)}`).then((r) => r.json());
      if (p.total) { bar.value = p.done / p.total; note.textContent = `Searching: ${p.done.toLocaleString()} of ${p.total.toLocaleString()} test images…`; }
    } catch { /* the answer below reports errors */ }
  }, 300);
  const result = await call("top", (signal) => api(`api/top-activations?source=${encodeURIComponent(source)}&layer=${encodeURIComponent(layerName)}&feature=${feature}`, { signal }));
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
  box.dataset.ms = (performance.now() - started).toFixed(1);
}

// ---- occlusion: the class probability as a grey square hides each part of the input ------------------------
async function runOcclusion() {
  if (!state.digit) return;
  const size = Number($("#occ-size").value);
  const stride = Number($("#occ-stride").value);
  const target = $("#occ-class").value === "" ? null : Number($("#occ-class").value);
  const result = await call("occlusion", (signal) => postJSON("api/occlusion", { source: state.source.id, digit: state.digit, size, stride, target }, signal));
  if (!result) { $("#occ-note").textContent = $("#status").textContent; return; }
  state.occlusion = result;
  $("#occ-results").hidden = false;
  const n = result.starts.length;
  const name = state.classes[result.target];
  $("#occ-note").textContent = `p(${name}) with nothing hidden: ${(100 * result.unoccluded).toFixed(1)}%. ` +
    `Each cell: p(${name}) with a ${size}×${size} square of the mean pixel at that place (dark: the model needs what it hides). ` +
    "Click a cell to see the square.";
  $("#occ-legend").replaceChildren(legend(0, 1, viridis));
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
    result = await channels.kernels.run((signal) => api(`api/kernels?source=${encodeURIComponent(state.source.id)}&max_filters=64`, { signal }));
  } catch (err) {
    $("#learned-note").textContent = err.message;
    $("#learned").replaceChildren();
    return;
  }
  if (!result) return;
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
    canvas.setAttribute("role", "img");
    canvas.setAttribute("aria-label", `filter ${i}`);
    figure.append(canvas, el("figcaption", "", String(i)));
    return figure;
  }));
}

// ---- filter playground input: the digit, or a photo decoded by the browser ----------------------------------
// A photo for the playground: grayscale (luminance), at most PHOTO_SIDE pixels a side, in steps of 1/255 so that
// the picture shown is exactly the image convolved.
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
  const context = context2d(canvas);
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
  playground.convolve();
}

function setupPhoto() {
  $("#pg-photo-button").addEventListener("click", () => $("#pg-photo").click());
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
    playground.convolve();
  });
}

const playground = setupPlayground(
  () => (state.photo ? { rows: state.photo.rows, name: state.photo.name } : state.digit ? { rows: greyRows(state.digit), name: "the digit" } : null),
  report);

// ---- start -----------------------------------------------------------------------------------------------
setupDrawing();
setupDetail();
setupOcclusion();
setupPhoto();
Promise.all([loadSources(), playground.start()])
  .then(() => { if (!state.digit) document.querySelector(".examples button")?.click(); })  // start with something to look at
  .then(() => { document.body.dataset.ready = "1"; })
  .catch((err) => setStatus(err.message));
