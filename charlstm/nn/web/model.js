// A charlstm model in the browser: the equations of charlstm/nn/cells.py, one character at a time, on the
// weights `charlstm export --out model.html` embeds. No dependency; every number is a JavaScript double, and
// the weights and the carried state are float32 arrays, as in training.
"use strict";

const sigmoid = (x) => 1 / (1 + Math.exp(-x));

// out[j] += sum_k x[k] * W[k][j] for W stored row-major [rows, cols] from `offset` (input-major, as charlstm).
function addMatVec(out, x, W, offset, cols) {
  for (let k = 0; k < x.length; k++) {
    const xk = x[k];
    if (xk === 0) continue;
    const row = offset + k * cols;
    for (let j = 0; j < cols; j++) out[j] += xk * W[row + j];
  }
  return out;
}

// x normalised to zero mean and unit variance (charlstm.nn.cells.normalise, eps 1e-5).
function normalise(x) {
  let mu = 0;
  for (const v of x) mu += v;
  mu /= x.length;
  let variance = 0;
  for (const v of x) variance += (v - mu) * (v - mu);
  const rs = 1 / Math.sqrt(variance / x.length + 1e-5);
  return x.map((v) => (v - mu) * rs);
}

class CharModel {
  // spec: {cell, layers, hidden, layer_norm, vocab: {encoding, symbols}, arrays: {name: [offset, rows, cols]}}
  constructor(spec, weights) {
    this.spec = spec;
    this.weights = weights; // one Float32Array holding every array
    this.H = spec.hidden;
    this.G = { lstm: 4, gru: 3, rnn: 1 }[spec.cell];
    this.V = spec.vocab.symbols.length;
  }

  array(name) {
    const [offset, rows, cols] = this.spec.arrays[name];
    return { offset, rows, cols, values: this.weights.subarray(offset, offset + rows * cols) };
  }

  // The state every sequence starts from: the learned h0 (and c0) of each layer, or zeros.
  start() {
    const state = [];
    for (let n = 0; n < this.spec.layers; n++) {
      const layer = {};
      for (const name of this.spec.cell === "lstm" ? ["h", "c"] : ["h"]) {
        const key = `start.${n}.${name}`;
        layer[name] = key in this.spec.arrays ? Float32Array.from(this.array(key).values) : new Float32Array(this.H);
      }
      state.push(layer);
    }
    return state;
  }

  // x W_ih + b of layer n (the LSTM normalises x W_ih first); layer 0's input is a character id: a row gather
  // of its table, into which the embedding is folded.
  projectInput(n, x) {
    const w = this.array(`layers.${n}.W_ih`);
    const cols = this.G * this.H;
    let xw = new Float64Array(cols);
    if (n === 0) xw.set(w.values.subarray(x * cols, (x + 1) * cols));
    else addMatVec(xw, x, this.weights, w.offset, cols);
    if (this.spec.layer_norm) xw = this.scaled(normalise(xw), `layers.${n}.gain_ih`);
    const b = this.array(this.spec.cell === "gru" ? `layers.${n}.b_ih` : `layers.${n}.b`).values;
    return xw.map((v, j) => v + b[j]);
  }

  scaled(x, name) {
    const g = this.array(name).values;
    return x.map((v, j) => v * g[j]);
  }

  recurrent(n, h) {
    const w = this.array(`layers.${n}.W_hh`);
    return addMatVec(new Float64Array(this.G * this.H), h, this.weights, w.offset, this.G * this.H);
  }

  // One step of layer n: reads its state, writes the new one, returns h.
  cellStep(n, s, xw) {
    const H = this.H;
    const p = (name) => this.array(`layers.${n}.${name}`).values;
    if (this.spec.cell === "lstm") {
      let hw = this.recurrent(n, s.h);
      if (this.spec.layer_norm) hw = this.scaled(normalise(hw), `layers.${n}.gain_hh`);
      const z = xw.map((v, j) => v + hw[j]);
      const c = new Float32Array(H);
      for (let j = 0; j < H; j++) {
        const i = sigmoid(z[j]); // input gate: how much new content to write
        const f = sigmoid(z[H + j]); // forget gate: how much of the old cell state to keep
        const g = Math.tanh(z[2 * H + j]); // candidate content
        c[j] = f * s.c[j] + i * g; // cell state: long-term memory, changed only additively
      }
      const shown = this.spec.layer_norm ? normalise(c).map((v, j) => v * p("gain_c")[j] + p("b_c")[j]) : c;
      const h = new Float32Array(H);
      for (let j = 0; j < H; j++) h[j] = sigmoid(z[3 * H + j]) * Math.tanh(shown[j]); // o * tanh(c)
      s.c = c;
      s.h = h;
    } else if (this.spec.cell === "gru") {
      const hw = this.recurrent(n, s.h);
      const bhh = p("b_hh");
      const h = new Float32Array(H);
      for (let j = 0; j < H; j++) {
        const r = sigmoid(xw[j] + hw[j] + bhh[j]); // reset gate: how much of the past feeds the candidate
        const z = sigmoid(xw[H + j] + hw[H + j] + bhh[H + j]); // update gate: how much of the old state to keep
        const cand = Math.tanh(xw[2 * H + j] + r * (hw[2 * H + j] + bhh[2 * H + j]));
        h[j] = (1 - z) * cand + z * s.h[j];
      }
      s.h = h;
    } else {
      const hw = this.recurrent(n, s.h);
      s.h = Float32Array.from(xw, (v, j) => Math.tanh(v + hw[j]));
    }
    return s.h;
  }

  // Read character id `x` into `state` (changed in place); returns the logits of the next character.
  step(state, x) {
    let input = x;
    for (let n = 0; n < this.spec.layers; n++) input = this.cellStep(n, state[n], this.projectInput(n, input));
    const head = this.array("head.W");
    const logits = Float64Array.from(this.array("head.b").values);
    return addMatVec(logits, input, this.weights, head.offset, this.V);
  }
}

// log softmax of logits / temperature.
function logSoftmax(logits, temperature = 1) {
  let top = -Infinity;
  for (const v of logits) top = Math.max(top, v / temperature);
  let sum = 0;
  for (const v of logits) sum += Math.exp(v / temperature - top);
  const lse = top + Math.log(sum);
  return logits.map((v) => v / temperature - lse);
}

// The next id: greedy, or drawn after temperature, top-k and top-p (as charlstm.nn.sampling.filter_logits:
// keep a token while the mass before it is below top_p, so the likeliest always survives).
function pick(logits, opts, random) {
  if (opts.greedy) {
    let best = 0;
    for (let j = 1; j < logits.length; j++) if (logits[j] > logits[best]) best = j;
    return best;
  }
  const logp = logSoftmax(logits, opts.temperature);
  let order = Array.from(logp.keys()).sort((a, b) => logp[b] - logp[a]);
  if (opts.topK > 0) order = order.slice(0, opts.topK);
  if (opts.topP < 1) {
    let before = 0;
    const kept = [];
    for (const j of order) {
      if (before >= opts.topP) break;
      kept.push(j);
      before += Math.exp(logp[j]);
    }
    order = kept;
  }
  let total = 0;
  for (const j of order) total += Math.exp(logp[j]);
  let u = random() * total;
  for (const j of order) {
    u -= Math.exp(logp[j]);
    if (u <= 0) return j;
  }
  return order[order.length - 1];
}

// A seeded generator of uniform numbers in [0, 1) (mulberry32): the same seed gives the same text here, though
// not the text `charlstm sample --seed` gives (JAX draws differently).
function seeded(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// Text <-> ids. A utf-8 model's symbols are code points; a bytes model's are byte values.
class Codec {
  constructor(vocab) {
    this.bytes = vocab.encoding === "bytes";
    this.symbols = vocab.symbols;
    this.index = new Map(vocab.symbols.map((s, i) => [s, i]));
  }

  // {ids, unknown}: the ids of the characters the model knows, and how many it does not.
  encode(text) {
    const points = this.bytes ? Array.from(new TextEncoder().encode(text)) : Array.from(text, (ch) => ch.codePointAt(0));
    const ids = points.filter((p) => this.index.has(p)).map((p) => this.index.get(p));
    return { ids, unknown: points.length - ids.length };
  }

  // A streaming decoder: push(id) returns the text it completes ("" inside a multi-byte character).
  decoder() {
    if (!this.bytes) return { push: (id) => String.fromCodePoint(this.symbols[id]) };
    const utf8 = new TextDecoder("utf-8");
    return { push: (id) => utf8.decode(new Uint8Array([this.symbols[id]]), { stream: true }) };
  }
}

// Cuts text fed piece by piece where it first completes one of `stops`, holding back an end that could be the
// start of one (sampling.StopScan in Python).
class StopScan {
  constructor(stops) {
    this.stops = stops;
    this.held = "";
    this.done = false;
  }

  feed(piece) {
    if (this.done) return "";
    const text = this.held + piece;
    let cut = -1;
    let end = Infinity;
    for (const s of this.stops) {
      const k = text.indexOf(s);
      if (k >= 0 && (k + s.length < end || (k + s.length === end && k < cut))) [cut, end] = [k, k + s.length];
    }
    if (cut >= 0) {
      this.done = true;
      this.held = "";
      return text.slice(0, cut);
    }
    let keep = 0;
    for (const s of this.stops) {
      for (let n = 1; n < s.length; n++) if (text.endsWith(s.slice(0, n))) keep = Math.max(keep, n);
    }
    this.held = text.slice(text.length - keep);
    return text.slice(0, text.length - keep);
  }

  flush() {
    const held = this.held;
    this.held = "";
    return held;
  }
}

// What the page (and a test) calls. Reading a prompt starts a line, as `charlstm sample` does: the newline is
// read first when the model has one and the prompt does not begin with it.
class Generator {
  constructor(model) {
    this.model = model;
    this.codec = new Codec(model.spec.vocab);
    this.newline = this.codec.index.has(10) ? this.codec.index.get(10) : -1;
  }

  read(ids) {
    const state = this.model.start();
    const all = this.newline >= 0 && ids[0] !== this.newline ? [this.newline, ...ids] : ids;
    let logits = null;
    for (const id of all) logits = this.model.step(state, id);
    return { state, logits };
  }

  // Natural-log probability of each character of `text` after the one before it, read from the start state
  // (the first character is not scored), as `charlstm eval` scores a file.
  logProbs(text) {
    const { ids } = this.codec.encode(text);
    const state = this.model.start();
    const out = [];
    for (let t = 0; t + 1 < ids.length; t++) out.push(logSoftmax(this.model.step(state, ids[t]))[ids[t + 1]]);
    return out;
  }

  // Yields pieces of text after `prompt`: opts {length, temperature, topK, topP, greedy, seed, stop}. The
  // sample ends where it first produces one of the texts in `stop`, which is left out (as `charlstm sample
  // --stop` does).
  *generate(prompt, opts) {
    const { ids } = this.codec.encode(prompt);
    let { state, logits } = this.read(ids.length ? ids : [Math.max(this.newline, 0)]);
    const random = seeded(opts.seed || 0);
    const decoder = this.codec.decoder();
    const scan = new StopScan(opts.stop || []);
    for (let n = 0; n < opts.length && !scan.done; n++) {
      const id = pick(logits, opts, random);
      logits = this.model.step(state, id);
      yield scan.feed(decoder.push(id));
    }
    yield scan.flush();
  }

  greedy(prompt, length) {
    return Array.from(this.generate(prompt, { length, greedy: true })).join("");
  }
}

// The page's model: the weights are base64 float32, little-endian, as the export wrote them.
function loadModel(spec, base64) {
  const raw = atob(base64);
  const bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
  return new Generator(new CharModel(spec, new Float32Array(bytes.buffer)));
}
