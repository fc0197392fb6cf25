// How the explorer draws numbers: colour scales, maps painted from bytes or floats, enlarged maps with marks, and
// the small DOM helpers every view uses. Nothing here asks the server anything.

// Signed values use a diverging scale centred on zero (blue negative, red positive); non-negative ones
// (images, ReLU and pooling outputs) a grayscale, so the input looks like MNIST: white ink on black.
export function colourFor(value, low, high) {
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
export function viridis(t) {
  const x = Math.max(0, Math.min(1, t)) * (VIRIDIS.length - 1);
  const i = Math.min(VIRIDIS.length - 2, Math.floor(x));
  return VIRIDIS[i].map((c, k) => c + (VIRIDIS[i + 1][k] - c) * (x - i));
}

// Every canvas of the page is drawn on the CPU: a page of many small canvases kept on the GPU makes each one a
// compositing layer (over a thousand for ResNet-18), and composing them would cost more than drawing them.
export const context2d = (canvas) => canvas.getContext("2d", { willReadFrequently: true });

// A colour as one 32-bit pixel of ImageData (little-endian RGBA, as every browser lays it out).
const pixel = ([r, g, b]) => ((255 << 24) | (Math.round(b) << 16) | (Math.round(g) << 8) | Math.round(r)) >>> 0;

// The colours of `levels` evenly spaced values from low to high: painting looks each pixel up instead of
// computing its colour, which keeps a model of 60 layers of maps quick to draw.
function lookup(low, high, colours, levels) {
  const table = new Uint32Array(levels);
  for (let i = 0; i < levels; i++) table[i] = pixel(colours(low + ((high - low) * i) / (levels - 1), low, high));
  return table;
}

function put(canvas, height, width, fill) {
  // a canvas's size is set only when it changes: setting it, even to the same value, lays the page out again
  if (canvas.width !== width) canvas.width = width;
  if (canvas.height !== height) canvas.height = height;
  const context = context2d(canvas);
  const image = context.createImageData(width, height);
  fill(new Uint32Array(image.data.buffer));
  context.putImageData(image, 0, 0);
}

// A map sent as bytes (0-255 on the layer's [low, high]), from `offset` in `bytes`.
export function paintBytes(canvas, bytes, offset, height, width, low, high, colours = colourFor) {
  const table = lookup(low, high, colours, 256);
  put(canvas, height, width, (out) => { for (let i = 0; i < out.length; i++) out[i] = table[bytes[offset + i]]; });
}

// Values (numbers), coloured on [low, high]; `colours` may be any function of (value, low, high).
export function paint(canvas, values, height, width, low, high, colours = colourFor) {
  if (colours !== colourFor && colours !== viridis) {  // a custom colouring: pixel by pixel
    put(canvas, height, width, (out) => { for (let i = 0; i < out.length; i++) out[i] = pixel(colours(values[i], low, high)); });
    return;
  }
  const table = lookup(low, high, colours, 1024);
  const span = high > low ? 1023 / (high - low) : 0;
  put(canvas, height, width, (out) => {
    for (let i = 0; i < out.length; i++) out[i] = table[Math.max(0, Math.min(1023, Math.round((values[i] - low) * span)))];
  });
}

// An outline that reads on any colour: a dark line inside a light one.
export function outline(context, top, left, height, width, colour = "#fde047") {
  context.lineWidth = 3;
  context.strokeStyle = colour;
  context.strokeRect(left + 1.5, top + 1.5, width - 3, height - 3);
  context.lineWidth = 1;
  context.strokeStyle = "#111";
  context.strokeRect(left + 0.5, top + 0.5, width - 1, height - 1);
}

// A map drawn `scale` screen pixels per value, so that its pixels can be marked; returns the scale used.
export function enlarged(canvas, values, height, width, low, high, scale, colours = colourFor) {
  const small = document.createElement("canvas");
  paint(small, values, height, width, low, high, colours);
  canvas.width = width * scale;
  canvas.height = height * scale;
  const context = context2d(canvas);
  context.imageSmoothingEnabled = false;
  context.drawImage(small, 0, 0, canvas.width, canvas.height);
  return context;
}

// How many screen pixels per value make a map about `target` pixels on its longer side (at least 2).
export const scaleFor = (height, width, target) => Math.max(2, Math.floor(target / Math.max(height, width)));

export const range = (values) => {
  let low = Infinity, high = -Infinity;
  for (const v of values) { if (v < low) low = v; if (v > high) high = v; }
  return [low, high];
};
export const flat = (rows) => rows.flat(Infinity);
export const fmt = (v, digits = 4) => (v === null || v === undefined ? "pad"
  : Math.abs(v) >= 1e5 || (Math.abs(v) < 1e-3 && v !== 0) ? v.toExponential(3) : v.toFixed(digits));
export const el = (tag, className, text) => Object.assign(document.createElement(tag), className ? { className } : {},
  text !== undefined ? { textContent: text } : {});

// Text that reads on a cell coloured `rgb`: black on light colours, white on dark ones.
export const inkOn = ([r, g, b]) => (0.299 * r + 0.587 * g + 0.114 * b > 140 ? "#111" : "#fff");

// A colour legend: what the colours mean, from the lowest value to the highest.
export function legend(low, high, colours = colourFor) {
  const box = el("div", "legend");
  const canvas = document.createElement("canvas");
  const steps = 64;
  paint(canvas, Array.from({ length: steps }, (_, i) => low + ((high - low) * i) / (steps - 1)), 1, steps, low, high, colours);
  box.append(el("span", "", fmt(low, 2)), canvas, el("span", "", fmt(high, 2)));
  box.setAttribute("role", "img");
  box.setAttribute("aria-label", colours !== colourFor ? "colour scale: dark purple lowest, yellow highest"
    : low < 0 ? "colour scale: blue negative, white zero, red positive" : "colour scale: black lowest, white highest");
  return box;
}
