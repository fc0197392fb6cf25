// Requests to the explorer's JSON API (/openapi.json), and the rule that keeps the page instant on any model: at
// most one request in flight per endpoint.

// body[data-pending] counts requests in flight or waiting, and drawings on their way to becoming one: "0" means
// the page shows its final answer (the tests wait for it).
export const pending = (change) => {
  document.body.dataset.pending = Number(document.body.dataset.pending || 0) + change;
};

export async function api(path, options = {}) {
  pending(+1);
  let response, body;
  try {
    response = await fetch(path, options);
    body = await response.json().catch((err) => {
      if (err.name === "AbortError") throw err;  // aborted while the body arrived: stale, not empty
      return {};
    });
  } finally {
    pending(-1);
  }
  if (!response.ok) {
    const detail = Array.isArray(body.detail) ? body.detail.map((d) => d.msg).join("; ") : body.detail;
    throw new Error(detail || `${path}: HTTP ${response.status}`);
  }
  return body;
}

export const postJSON = (path, body, signal) => api(path, {
  method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body), signal,
});

// One endpoint's requests, one at a time. `run(make, mode)` calls make(signal) for a promise of the answer and
// resolves to that answer, or to null when a newer request made it stale:
// - "replace" (a click: an example, a pixel, a model): the request in flight is aborted, this one starts now;
// - "queue" (a stroke being drawn): while one is in flight, this one waits, and a newer one replaces it; the
//   newest starts when the answer in flight arrives. However fast a hand moves, the server computes one drawing
//   at a time, and the last one always.
export class Channel {
  constructor() {
    this.controller = null;
    this.waiting = null;
  }

  run(make, mode = "replace") {
    pending(+1);
    let answer;
    if (mode === "queue" && this.controller) {
      this.waiting?.resolve(null);
      answer = new Promise((resolve, reject) => { this.waiting = { make, resolve, reject }; });
    } else {
      this.controller?.abort();
      this.waiting?.resolve(null);
      this.waiting = null;
      answer = this.start(make);
    }
    return answer.finally(() => pending(-1));
  }

  async start(make) {
    const controller = new AbortController();
    this.controller = controller;
    try {
      return await make(controller.signal);
    } catch (err) {
      if (err.name === "AbortError") return null;
      throw err;
    } finally {
      if (this.controller === controller) {
        this.controller = null;
        const next = this.waiting;
        this.waiting = null;
        if (next) this.start(next.make).then(next.resolve, next.reject);
      }
    }
  }
}

// Maps travel as base64: bytes (a layer's maps on its own scale) or little-endian float32 (exact values).
export function bytesOf(base64) {
  const text = atob(base64);
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return bytes;
}
export const floatsOf = (packed) => new Float32Array(bytesOf(packed.data).buffer);
