// The overview: one row per layer, input to softmax, and the connections between them.
//
// Each row is one stop of the Tab key: its units (maps, or the values of a vector) are reached with the arrow keys
// (a roving tabindex), and Enter opens one. Hovering or focusing a unit highlights the units of the row it reads
// that feed it and draws the links, as Harley's visualization does: for a convolution every map it reads, for a
// pooling or an activation the same map, for a fully connected unit its strongest inputs (the largest w·x).

import { bytesOf, pending } from "./api.js";
import { colourFor, context2d, el, fmt, inkOn, paint, paintBytes, range } from "./paint.js";

const narrow = () => window.matchMedia("(max-width: 600px)").matches;

// A vector's values as a grid of cells on one canvas: `cell` pixels each, `columns` to a line.
export function paintVector(canvas, values, cell, columns, low, high, marks = {}) {
  const lines = Math.ceil(values.length / columns);
  canvas.width = columns * cell;
  canvas.height = lines * cell;
  canvas.style.width = `${canvas.width}px`;
  canvas.style.height = `${canvas.height}px`;
  const context = context2d(canvas);
  values.forEach((v, i) => {
    const [r, g, b] = colourFor(v, Math.min(low, 0), high);
    context.fillStyle = `rgb(${r},${g},${b})`;
    context.fillRect((i % columns) * cell, Math.floor(i / columns) * cell, cell - (cell > 8 ? 1 : 0), cell - (cell > 8 ? 1 : 0));
  });
  context.lineWidth = 2;
  for (const [i, colour] of Object.entries(marks)) {
    context.strokeStyle = colour;
    context.strokeRect((i % columns) * cell + 1, Math.floor(i / columns) * cell + 1, cell - 2, cell - 2);
  }
}

export class Network {
  // `open(layer, index, element)`: a unit was chosen (click, tap, Enter).
  constructor(container, open) {
    this.container = container;
    this.open = open;
    this.rows = new Map();  // name -> {layer, units: [elements] or a vector canvas}
    this.links = el("canvas", "links");
    this.links.setAttribute("aria-hidden", "true");
    this.chosen = null;  // {layer, index}: the unit whose view is open; its links stay drawn
    let resized = null;  // the rows are laid out for the page's width: again when it changes
    let width = window.innerWidth;
    window.addEventListener("resize", () => {
      if (window.innerWidth === width) return;
      width = window.innerWidth;
      clearTimeout(resized);
      resized = setTimeout(() => { if (this.shown) { this.signature = null; this.show(this.shown); } }, 150);
    });
  }

  // The rows of a new answer: repainted in place when the model is the same (a stroke's updates: no element is
  // made or laid out again, and the keyboard keeps its place), built afresh otherwise.
  // Rows on the screen are painted at once, the others right after, a few at a time, so that a deep model's
  // answer shows what is in view without waiting for the rest; while a stroke is drawn (`final` false) the rows
  // out of view wait for its end.
  show(layers, final = true) {
    this.shown = layers;
    const signature = layers.map((l) => `${l.name}:${l.shape}:${l.shown}:${l.thumbnail || ""}`).join("|");
    if (signature !== this.signature) {
      // the keyboard stays on the unit it was on, in the row drawn again
      const focused = this.container.contains(document.activeElement) ? document.activeElement : null;
      const where = focused && { name: focused.closest(".layer")?.dataset.layer, index: Number(focused.dataset.index) };
      this.signature = signature;
      this.rows.clear();
      const rows = layers.map((layer) => (layer.maps ? this.mapRow(layer) : layer.labels ? this.labelledRow(layer)
        : this.vectorRow(layer)));
      this.container.replaceChildren(this.links, ...rows);
      if (this.chosen) this.unit(this.chosen.name, this.chosen.index)?.classList.add("chosen");
      if (where?.name && this.rows.has(where.name)) this.unit(where.name, where.index)?.focus();
    }
    clearTimeout(this.later?.timer);
    if (this.later) pending(-1);
    layers.forEach((layer) => { this.rows.get(layer.name).layer = layer; });
    const inView = (layer) => {
      const box = this.rows.get(layer.name).element.getBoundingClientRect();
      return box.bottom >= 0 && box.top <= window.innerHeight;
    };
    const later = layers.filter((layer) => !inView(layer));
    layers.filter(inView).forEach((layer) => this.repaint(layer));
    this.later = later.length && final ? { rows: later } : null;
    if (this.later) {
      pending(+1);
      const next = () => {
        this.later.rows.splice(0, 2).forEach((layer) => this.repaint(layer));
        if (this.later.rows.length) this.later.timer = setTimeout(next, 0);
        else { this.later = null; pending(-1); }
      };
      this.later.timer = setTimeout(next, 0);
    }
    if (this.hovered || this.chosen) this.redrawLinks();
  }

  // A row sent again with more of its maps (a summarized row opened), in place of the one shown.
  replace(layer) {
    const old = this.rows.get(layer.name);
    if (!old) return;
    const row = this.mapRow(layer);
    old.element.replaceWith(row);
    this.shown = this.shown.map((l) => (l.name === layer.name ? layer : l));
    this.signature = this.shown.map((l) => `${l.name}:${l.shape}:${l.shown}:${l.thumbnail || ""}`).join("|");
    this.repaint(layer);
    this.redrawLinks();
  }

  repaint(layer) {
    const row = this.rows.get(layer.name);
    row.layer = layer;
    if (layer.maps) {
      row.draw(layer);
    } else if (layer.labels) {
      this.fillLabelled(layer, row.units);
    } else {
      Object.assign(row.vector, { layer, values: layer.values }, Object.fromEntries(["low", "high"].map((k, i) => [k, range(layer.values)[i]])));
      row.vector.draw();
    }
  }

  head(layer) {
    const row = el("div", "layer");
    row.dataset.layer = layer.name;
    const head = el("div", "head");
    const kernel = layer.kernel ? ` · kernels ${layer.kernel.join("×")}` : "";
    const reads = layer.reads?.length ? ` · reads ${layer.reads.join(" + ")}` : "";
    head.append(el("div", "name", layer.name), el("div", "meta", `${layer.type} · ${layer.shape.join("×")}${kernel}`),
      el("div", "meta reads", reads.slice(3)));
    row.append(head);
    return row;
  }

  // Maps: drawn side by side on one canvas per row (a page of a thousand small canvases would be a thousand
  // compositing layers, slow to show), each under a transparent element that takes the pointer and the keyboard.
  mapRow(layer) {
    const row = this.head(layer);
    const box = el("div", "maps");
    box.setAttribute("role", "group");
    box.setAttribute("aria-label", `${layer.name}: ${layer.shown} of ${layer.shape[0]} maps; arrow keys move, Enter explains`);
    const sheet = el("canvas", "sheet");
    sheet.setAttribute("aria-hidden", "true");
    const [height, width] = layer.thumbnail || layer.shape.slice(1);
    const tall = narrow() ? 36 : 44;
    const wide = Math.max(24, Math.round((tall * width) / height));
    const caption = layer.labels ? 14 : 0;
    const gap = 4;
    const room = Math.max(wide, (this.container.clientWidth || 800) - (narrow() ? 0 : 172));
    const columns = Math.max(1, Math.min(layer.shown, Math.floor((room + gap) / (wide + gap))));
    const lines = Math.ceil(layer.shown / columns);
    const place = (k) => ({ left: (k % columns) * (wide + gap), top: Math.floor(k / columns) * (tall + caption + gap) });
    const ratio = window.devicePixelRatio || 1;
    sheet.width = Math.round((columns * (wide + gap) - gap) * ratio);
    sheet.height = Math.round((lines * (tall + caption + gap) - gap) * ratio);
    sheet.style.width = `${columns * (wide + gap) - gap}px`;
    sheet.style.height = `${lines * (tall + caption + gap) - gap}px`;
    const units = [];
    for (let k = 0; k < layer.shown; k++) {
      const unit = el("span", "unit");
      unit.dataset.index = k;
      const { left, top } = place(k);
      Object.assign(unit.style, { left: `${left}px`, top: `${top}px`, width: `${wide}px`, height: `${tall}px` });
      const label = `${layer.name} map ${k}${layer.labels ? ` (${layer.labels[k]})` : ""}`;
      unit.setAttribute("aria-label", label);
      unit.title = label;
      units.push(unit);
    }
    const area = el("div", "sheet-box");
    area.append(sheet, ...units);
    box.append(area);
    if (layer.shape[0] > layer.shown && this.expand) {  // summarized until opened
      const more = el("button", "small more", `+ ${layer.shape[0] - layer.shown} more maps: show them`);
      more.type = "button";
      more.addEventListener("click", () => this.expand(layer.name));
      box.append(more);
    } else if (layer.shape[0] > layer.shown) {
      box.append(el("span", "more", `+ ${layer.shape[0] - layer.shown} more maps`));
    }
    if (layer.thumbnail) {
      box.append(el("span", "more", `thumbnails (${layer.shape[1]}×${layer.shape[2]} maps shown at ` +
        `${layer.thumbnail[0]}×${layer.thumbnail[1]}); open one for every pixel`));
    }
    row.append(box);
    const small = document.createElement("canvas");
    const draw = (current) => {
      const context = context2d(sheet);
      context.setTransform(ratio, 0, 0, ratio, 0, 0);
      context.imageSmoothingEnabled = false;
      context.clearRect(0, 0, sheet.width, sheet.height);
      const bytes = current.floats ? null : typeof current.maps === "string" ? bytesOf(current.maps) : current.maps;
      for (let k = 0; k < current.shown; k++) {
        if (current.floats) paint(small, current.floats[k], height, width, current.min, current.max);
        else paintBytes(small, bytes, k * height * width, height, width, current.min, current.max);
        const { left, top } = place(k);
        context.drawImage(small, left, top, wide, tall);
        context.strokeStyle = "#d9dde5";
        context.lineWidth = 1;
        context.strokeRect(left + 0.5, top + 0.5, wide - 1, tall - 1);
        if (current.labels) {
          context.fillStyle = "#5b6475";
          context.font = "11px system-ui, sans-serif";
          context.textAlign = "center";
          context.fillText(current.labels[k], left + wide / 2, top + tall + 11, wide);
        }
      }
    };
    this.rows.set(layer.name, { layer, units, element: row, sheet, draw });
    if (layer.name !== "input") this.rove(layer, units);
    else units.forEach((unit) => unit.setAttribute("role", "img"));  // the input explains nothing: no button
    return row;
  }

  // Class vectors (the logits, the probabilities): one named cell per class.
  labelledRow(layer) {
    const row = this.head(layer);
    const strip = el("div", "strip labelled");
    strip.setAttribute("role", "group");
    strip.setAttribute("aria-label", `${layer.name}: one value per class; arrow keys move, Enter explains`);
    const units = layer.values.map((_, i) => {
      const cell = el("span", "cell");
      cell.dataset.index = i;
      // named from the start: a row out of view is painted (and its value named) only when the drawing ends
      cell.setAttribute("aria-label", `${layer.name} of class ${layer.labels[i]}`);
      strip.append(cell);
      return cell;
    });
    row.append(strip);
    this.rows.set(layer.name, { layer, units, element: row });
    this.rove(layer, units);
    return row;
  }

  fillLabelled(layer, cells) {
    const [low, high] = range(layer.values);
    const probability = layer.name === "softmax";
    cells.forEach((cell, i) => {
      const value = layer.values[i];
      if (probability) {
        cell.style.background = `rgba(22, 163, 74, ${value})`;  // the greener, the likelier
        cell.textContent = `${layer.labels[i]}: ${(100 * value).toFixed(0)}%`;
      } else {
        const colour = colourFor(value, Math.min(low, 0), high);
        cell.style.background = `rgb(${colour.join(",")})`;
        cell.style.color = inkOn(colour);
        cell.textContent = `${layer.labels[i]}: ${value.toFixed(2)}`;
      }
      // the name begins with the text shown (what a speech user says), then the exact value
      cell.setAttribute("aria-label", `${cell.textContent}, ${layer.name} of class ${layer.labels[i]}: ` +
        `${probability ? `${(100 * value).toFixed(2)}%` : fmt(value)}`);
    });
  }

  // Other vectors: one canvas of cells; the arrow keys move a marked cell inside it.
  vectorRow(layer) {
    const row = this.head(layer);
    const canvas = el("canvas", "vector");
    const [low, high] = range(layer.values);
    // a phone's finger needs 24-pixel cells; a long vector is drawn small and opens enlarged in the view below
    const cell = narrow() ? (layer.values.length <= 64 ? 24 : 8) : layer.values.length <= 256 ? 14 : 8;
    const width = Math.max(cell, (this.container.clientWidth || 800) - (narrow() ? 0 : 180));
    const columns = Math.max(1, Math.min(layer.values.length, Math.floor(width / cell)));
    const unit = { layer, values: layer.values, canvas, cell, columns, low, high, index: 0, marks: {} };
    canvas.dataset.index = 0;
    // the current value is marked while the row has the keyboard, or while its view is open
    unit.draw = () => paintVector(canvas, unit.values, cell, columns, unit.low, unit.high, document.activeElement === canvas ||
      canvas.classList.contains("chosen") ? { ...unit.marks, [unit.index]: "#1f6feb" } : unit.marks);
    unit.draw();
    const box = el("div", "vector-box");
    box.append(canvas);
    if (layer.shape[0] > layer.shown) box.append(el("span", "more", `+ ${layer.shape[0] - layer.shown} more values`));
    row.append(box);
    this.rows.set(layer.name, { layer, units: [canvas], vector: unit, element: row });
    canvas.tabIndex = 0;
    canvas.setAttribute("role", "slider");
    canvas.setAttribute("aria-valuemin", "0");
    canvas.setAttribute("aria-valuemax", String(layer.values.length - 1));
    const label = () => {
      canvas.dataset.index = unit.index;
      canvas.setAttribute("aria-valuenow", String(unit.index));
      canvas.setAttribute("aria-valuetext", `value ${unit.index} of ${layer.shape[0]}: ${fmt(unit.values[unit.index])}`);
      canvas.setAttribute("aria-label", `${layer.name}, ${layer.shape[0]} values: arrow keys move, Enter explains`);
    };
    label();
    const at = (event) => {
      const box = canvas.getBoundingClientRect();
      const i = Math.floor((event.clientY - box.top) / cell) * columns + Math.floor((event.clientX - box.left) / cell);
      return Math.max(0, Math.min(layer.values.length - 1, i));
    };
    const move = (i) => { unit.index = i; label(); unit.draw(); this.hover(layer.name, i); };
    canvas.addEventListener("click", (event) => { move(at(event)); this.open(unit.layer, unit.index, canvas); });
    canvas.addEventListener("pointermove", (event) => { if (event.pointerType === "mouse") this.hover(layer.name, at(event)); });
    canvas.addEventListener("pointerleave", () => this.hover(null));
    canvas.addEventListener("focus", () => { unit.draw(); this.hover(layer.name, unit.index); });
    canvas.addEventListener("blur", () => { unit.draw(); this.hover(null); });
    canvas.addEventListener("keydown", (event) => {
      const step = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: columns, ArrowUp: -columns }[event.key];
      if (step) {
        event.preventDefault();
        move(Math.max(0, Math.min(layer.values.length - 1, unit.index + step)));
      } else if (event.key === "Home" || event.key === "End") {
        event.preventDefault();
        move(event.key === "Home" ? 0 : layer.values.length - 1);
      } else if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        this.open(unit.layer, unit.index, canvas);
      }
    });
    return row;
  }

  // One tab stop per row: the current unit has tabindex 0, the others -1; the arrow keys move between them.
  rove(layer, units) {
    units.forEach((unit, i) => {
      unit.tabIndex = i ? -1 : 0;
      unit.setAttribute("role", "button");
      const current = () => this.rows.get(layer.name)?.layer || layer;  // the latest answer's, after a repaint
      unit.addEventListener("click", () => this.open(current(), i, unit));
      unit.addEventListener("pointerenter", (event) => { if (event.pointerType === "mouse") this.hover(layer.name, i); });
      unit.addEventListener("pointerleave", () => this.hover(null));
      unit.addEventListener("focus", () => {
        units.forEach((other) => { other.tabIndex = other === unit ? 0 : -1; });
        this.hover(layer.name, i);
      });
      unit.addEventListener("blur", () => this.hover(null));
      unit.addEventListener("keydown", (event) => {
        const moves = { ArrowRight: 1, ArrowDown: 1, ArrowLeft: -1, ArrowUp: -1, Home: -units.length, End: units.length };
        if (moves[event.key] !== undefined) {
          event.preventDefault();
          units[Math.max(0, Math.min(units.length - 1, i + moves[event.key]))].focus();
        } else if (event.key === "Enter" || event.key === " ") {
          event.preventDefault();
          this.open(current(), i, unit);
        }
      });
    });
  }

  // The element of unit `index` of row `name` (a vector's canvas, with the index moved there), or null.
  unit(name, index) {
    const row = this.rows.get(name);
    if (!row) return null;
    if (row.vector) {
      if (index >= row.layer.values.length) return null;
      row.vector.index = index;
      row.vector.draw();
      return row.vector.canvas;
    }
    return row.units[index] || null;
  }

  // The units of the rows below that feed unit `index` of row `name`: [{name, index}], and the row's link rule.
  feeders(name, index) {
    const row = this.rows.get(name);
    if (!row || !row.layer.links) return [];
    const { layer } = row;
    const links = layer.links;
    const found = [];
    for (const source of layer.reads || []) {
      const from = this.rows.get(source);
      if (!from) continue;
      const count = from.vector ? from.layer.values.length : from.units.length;
      const add = (i) => { if (i >= 0 && i < count) found.push({ name: source, index: i }); };
      if (links.type === "same") add(index);
      else if (links.type === "dense") for (let i = 0; i < count; i++) add(i);
      else if (links.type === "table") (links.table[index] || []).forEach(add);
      else if (links.type === "window") for (let i = index - Math.floor(links.size / 2); i <= index + Math.floor((links.size - 1) / 2); i++) add(i);
      else if (links.type === "flatten" || links.type === "strongest") {
        const indices = links.type === "flatten" ? [index] : links.strongest[index] || [];
        if (from.vector) indices.forEach(add);
        else {  // maps laid out end to end: value i is in map i / (H W)
          const size = from.layer.shape[1] * from.layer.shape[2];
          [...new Set(indices.map((i) => Math.floor(i / size)))].forEach(add);
        }
      }
    }
    return found;
  }

  // Highlight what feeds unit `index` of row `name` (null: back to the chosen unit's links).
  hover(name, index) {
    this.hovered = name === null ? null : { name, index };
    this.redrawLinks();
  }

  choose(name, index) {
    this.container.querySelectorAll(".chosen").forEach((e) => e.classList.remove("chosen"));
    this.chosen = { name, index };
    this.unit(name, index)?.classList.add("chosen");
    for (const row of this.rows.values()) row.vector?.draw();
    this.redrawLinks();
  }

  redrawLinks() {
    const target = this.hovered || this.chosen;
    this.container.querySelectorAll(".feeds").forEach((e) => e.classList.remove("feeds"));
    for (const row of this.rows.values()) {
      if (row.vector && Object.keys(row.vector.marks).length) { row.vector.marks = {}; row.vector.draw(); }
    }
    const box = this.container.getBoundingClientRect();
    this.links.width = Math.round(box.width);
    this.links.height = Math.round(box.height);
    const context = context2d(this.links);
    context.clearRect(0, 0, this.links.width, this.links.height);
    if (!target) return;
    const to = this.rect(target.name, target.index);
    if (!to) return;
    const sources = this.feeders(target.name, target.index);
    this.container.dataset.feeding = sources.map((s) => `${s.name}:${s.index}`).join(" ");
    context.strokeStyle = "rgba(31, 111, 235, 0.55)";
    context.lineWidth = 1.5;
    for (const source of sources) {
      const row = this.rows.get(source.name);
      if (row.vector) {
        row.vector.marks[source.index] = "#f59e0b";
      } else {
        row.units[source.index]?.classList.add("feeds");
      }
      const from = this.rect(source.name, source.index);
      if (!from) continue;
      context.beginPath();
      context.moveTo(from.x - box.left, from.y - box.top);
      context.lineTo(to.x - box.left, to.top - box.top);
      context.stroke();
    }
    for (const row of this.rows.values()) if (row.vector && Object.keys(row.vector.marks).length) row.vector.draw();
  }

  // Where a unit is on the screen: its centre (x, y) and top edge.
  rect(name, index) {
    const row = this.rows.get(name);
    if (!row) return null;
    if (row.vector) {
      const { canvas, cell, columns } = row.vector;
      const box = canvas.getBoundingClientRect();
      const x = box.left + ((index % columns) + 0.5) * cell;
      const y = box.top + (Math.floor(index / columns) + 0.5) * cell;
      return { x, y, top: y - cell / 2 };
    }
    const element = row.units[index];
    if (!element) return null;
    const box = element.getBoundingClientRect();
    return { x: box.left + box.width / 2, y: box.bottom, top: box.top };
  }
}
