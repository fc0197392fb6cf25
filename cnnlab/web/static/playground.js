// The filter playground: a hand-crafted or edited kernel, with stride, zero padding and dilation, convolved by the
// server with the page's input (the digit, or a photo); its window slides over that same input, with the numbers
// of each place, and the output fills in. The output size, the window and the pixels it makes all come from the
// one convolution, so the animation can never disagree with the result shown above it.

import { api, Channel, postJSON } from "./api.js";
import { colourFor, context2d, el, enlarged, flat, fmt, inkOn, outline, paint, range, scaleFor } from "./paint.js";

const $ = (selector) => document.querySelector(selector);
const reducedMotion = window.matchMedia("(prefers-reduced-motion: reduce)").matches;
const convolving = new Channel();

// `source()`: the image to convolve, {rows (grey, 0-1), name}; `report(kind, error)`: show or clear an error.
export function setupPlayground(source, report) {
  const state = { filters: [], result: null, image: null, position: 0, timer: null, playing: !reducedMotion };
  const settings = () => ({ k: Number($("#pg-kernel").value), s: Number($("#pg-stride").value),
    p: Number($("#pg-padding").value), d: Number($("#pg-dilation").value) });

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
      input.addEventListener("input", () => { $("#filter-pick").value = "custom"; convolve(); });
      return input;
    }));
  }

  async function convolve() {
    const { rows, name } = source() || {};
    if (!rows) return;
    const { k, s, p, d } = settings();
    const values = Array.from($("#kernel").children, (input) => Number(input.value));
    if (values.length !== k * k || values.some((v) => !Number.isFinite(v)) || ![s, p, d].every(Number.isInteger)) return;
    const kernel = Array.from({ length: k }, (_, r) => values.slice(r * k, (r + 1) * k));
    let result;
    try {
      result = await convolving.run((signal) => postJSON("api/convolve", { image: rows, kernel, padding: p, stride: s, dilation: d }, signal));
      report("convolve", null);
    } catch (err) {
      report("convolve", err);
      showRefusal(rows, kernel, { s, p, d }, err.message);
      return;
    }
    if (!result) return;
    state.result = { ...result, rows, kernel, s, p, d, name };
    const [height, width] = result.shape;
    const out = flat(result.output);
    const [low, high] = range(out);
    paint($("#conv-output"), out, height, width, low, high);
    $("#conv-output").dataset.range = `${low},${high}`;
    $("#conv-output").dataset.shape = result.shape.join(",");
    $("#conv-range").textContent = `values ${low.toFixed(2)} to ${high.toFixed(2)}`;
    const [rowsAxis, colsAxis] = result.arithmetic;
    $("#conv-size").textContent = result.arithmetic.map((a, axis) => `${axis ? "columns" : "rows"}: ${a.input} → ` +
      `${a.formula} = ${a.output}` + (a.exact ? "" : ` (rounded down: ${a.reason})`)).join("; ");
    const output = $("#pg-output");
    output.dataset.output = rowsAxis.output;
    output.dataset.shape = result.shape.join(",");
    output.dataset.valid = "true";
    output.dataset.exact = String(rowsAxis.exact && colsAxis.exact);
    output.textContent = `output = ${height}×${width}`;
    $("#pg-formula").textContent = `(n + 2p − d(k−1) − 1) / s + 1: rows ${rowsAxis.formula} = ${rowsAxis.output}; ` +
      `columns ${colsAxis.formula} = ${colsAxis.output}`;
    const why = $("#pg-why");
    const inexact = result.arithmetic.filter((a) => !a.exact);
    why.textContent = inexact.length ? inexact.map((a) => a.reason).join("; ")
      : "The division is exact: every window fits, and every input pixel is read.";
    why.classList.toggle("warn", inexact.length > 0);
    state.position = Math.min(state.position, height * width - 1);
    frame();
  }

  // No window fits (a photo smaller than the kernel's span): the page says why, and draws the input alone.
  function showRefusal(rows, kernel, { s, p, d }, reason) {
    state.result = null;
    const output = $("#pg-output");
    output.dataset.output = 0;
    output.dataset.valid = "false";
    output.dataset.shape = "";
    output.textContent = "no output";
    $("#conv-output").dataset.range = "";
    $("#conv-size").textContent = reason;
    $("#pg-formula").textContent = "";
    $("#pg-why").textContent = reason;
    $("#pg-why").classList.add("warn");
    const canvas = $("#pg-anim");
    const [low, high] = range(flat(rows));
    const scale = scaleFor(rows.length + 2 * p, rows[0].length + 2 * p, 300);
    enlarged(canvas, flat(rows), rows.length, rows[0].length, Math.min(low, 0), high, scale);
    $("#pg-numbers").replaceChildren(el("p", "note warn", `${reason} (kernel ${kernel.length}×${kernel.length}, stride ${s}, ` +
      `padding ${p}, dilation ${d}).`));
  }

  // One place of the window: the padded input with the (dilated) window, the output filled in up to that place,
  // and the window's numbers: its pixels times the kernel, summed, which is the output pixel the server computed.
  function frame() {
    const r = state.result;
    if (!r) return;
    const [outH, outW] = r.shape;
    const { rows, kernel, s, p, d } = r;
    const [height, width] = [rows.length, rows[0].length];
    const k = kernel.length;
    const y = Math.floor(state.position / outW), x = state.position % outW;
    const side = { h: height + 2 * p, w: width + 2 * p };
    const scale = scaleFor(side.h, side.w, 300);
    const outScale = scaleFor(outH, outW, 200);
    const gap = 24;
    state.layout = { scale, outScale, left: side.w * scale + gap, s, outH, outW };
    const canvas = $("#pg-anim");
    canvas.width = side.w * scale + gap + outW * outScale;
    canvas.height = Math.max(side.h * scale, outH * outScale);
    const context = context2d(canvas);
    context.clearRect(0, 0, canvas.width, canvas.height);
    context.fillStyle = "#d1d5db";  // zero padding
    context.fillRect(0, 0, side.w * scale, side.h * scale);
    const input = document.createElement("canvas");
    paint(input, flat(rows), height, width, 0, 1);
    context.imageSmoothingEnabled = false;
    context.drawImage(input, p * scale, p * scale, width * scale, height * scale);
    if (r.arithmetic.some((a) => a.dropped)) {  // never read: the last pixels a window would start past
      context.fillStyle = "rgba(254, 202, 202, 0.7)";
      const [dy, dx] = r.arithmetic.map((a) => a.dropped);
      context.fillRect(0, (side.h - dy) * scale, side.w * scale, dy * scale);
      context.fillRect((side.w - dx) * scale, 0, dx * scale, side.h * scale);
    }
    context.fillStyle = "rgba(253, 224, 71, 0.5)";
    for (let i = 0; i < k; i++) for (let j = 0; j < k; j++) context.fillRect((x * s + j * d) * scale, (y * s + i * d) * scale, scale, scale);
    outline(context, y * s * scale, x * s * scale, ((k - 1) * d + 1) * scale, ((k - 1) * d + 1) * scale);
    const out = flat(r.output);
    const [low, high] = range(out);
    const left = side.w * scale + gap;
    const filled = document.createElement("canvas");
    paint(filled, out.map((v, i) => (i <= state.position ? v : NaN)), outH, outW, low, high,
      (v, l, h) => (Number.isNaN(v) ? [243, 244, 246] : colourFor(v, l, h)));
    context.drawImage(filled, left, 0, outW * outScale, outH * outScale);
    outline(context, y * outScale, left + x * outScale, outScale, outScale);
    canvas.dataset.position = `${y},${x}`;
    canvas.setAttribute("aria-label", `the ${k}×${k} window at output row ${y}, column ${x}, over the padded input; ` +
      `the output beside it, filled in up to there`);
    // the window's numbers: zero where it falls into the padding
    const patch = Array.from({ length: k }, (_, i) => Array.from({ length: k }, (_, j) => {
      const row = y * s + i * d - p, col = x * s + j * d - p;
      return row < 0 || col < 0 || row >= height || col >= width ? 0 : rows[row][col];
    }));
    const products = patch.map((line, i) => line.map((v, j) => v * kernel[i][j]));
    const sum = products.flat().reduce((total, v) => total + v, 0);
    // the window's pixels in the input's own greys, the kernel and the products on a signed scale
    const grid = (values, [lo, hi] = [Math.min(range(flat(values))[0], -1e-9), Math.max(range(flat(values))[1], 1e-9)]) => {
      const box = el("div", "grid");
      box.style.gridTemplateColumns = `repeat(${k}, auto)`;
      values.flat().forEach((v) => {
        const colour = colourFor(v, lo, hi);
        const cell = el("span", "", v.toFixed(2));
        cell.style.background = `rgb(${colour.join(",")})`;
        cell.style.color = inkOn(colour);
        box.append(cell);
      });
      return box;
    };
    const line = el("div", "sum");
    line.append(grid(patch, [0, 1]), el("span", "op", "×"), grid(kernel), el("span", "op", "="), grid(products),
      el("span", "total", `Σ = ${fmt(sum)}`));
    const note = el("p", "note", `Output row ${y}, column ${x} = ${fmt(out[state.position])} (the server's convolution; ` +
      `the sum here is ${fmt(sum)}).`);
    $("#pg-numbers").replaceChildren(line, note);
    $("#pg-numbers").dataset.sum = sum;
    $("#pg-numbers").dataset.output = out[state.position];
  }

  function step() {
    if (!state.result) return;
    const [outH, outW] = state.result.shape;
    state.position = (state.position + 1) % (outH * outW);
    frame();
  }

  function setPlaying(playing) {
    state.playing = playing;
    clearInterval(state.timer);
    state.timer = playing ? setInterval(step, 150) : null;
    $("#pg-play").textContent = playing ? "Pause" : "Play";
    $("#pg-play").setAttribute("aria-pressed", String(playing));
  }

  async function start() {
    state.filters = await api("api/filters");
    const pick = $("#filter-pick");
    pick.replaceChildren(...state.filters.map((f) => new Option(f.title, f.name)), new Option("Custom (edit the kernel)", "custom"));
    const useFilter = () => {
      const chosen = state.filters.find((f) => f.name === pick.value);
      if (!chosen) return;
      $("#pg-kernel").value = chosen.kernel.length;
      kernelGrid(chosen.kernel.length, flat(chosen.kernel).map((v) => +v.toFixed(4)));
      convolve();
    };
    pick.addEventListener("change", useFilter);
    $("#pg-kernel").addEventListener("change", () => {
      // a new size starts as the identity kernel (1 in the middle), ready to edit
      const k = Number($("#pg-kernel").value);
      kernelGrid(k, Array.from({ length: k * k }, (_, i) => (i === Math.floor(k / 2) * (k + 1) ? 1 : 0)));
      pick.value = "custom";
      convolve();
    });
    for (const id of ["#pg-stride", "#pg-padding", "#pg-dilation"]) $(id).addEventListener("input", () => { state.position = 0; convolve(); });
    $("#pg-play").addEventListener("click", () => setPlaying(!state.playing));
    $("#pg-anim").addEventListener("click", (event) => {  // a click places the window (on the input or the output)
      const layout = state.layout;
      if (!state.result || !layout) return;
      const box = $("#pg-anim").getBoundingClientRect();
      const x = ((event.clientX - box.left) * $("#pg-anim").width) / box.width;
      const y = ((event.clientY - box.top) * $("#pg-anim").height) / box.height;
      const [row, column] = x >= layout.left ? [y / layout.outScale, (x - layout.left) / layout.outScale]
        : [y / layout.scale / layout.s, x / layout.scale / layout.s];
      setPlaying(false);
      state.position = Math.min(layout.outH - 1, Math.floor(row)) * layout.outW + Math.min(layout.outW - 1, Math.floor(column));
      frame();
    });
    $("#pg-step").addEventListener("click", () => { setPlaying(false); step(); });
    pick.value = "edge-detection-2";
    useFilter();
    setPlaying(state.playing);
  }

  return { start, convolve };
}
