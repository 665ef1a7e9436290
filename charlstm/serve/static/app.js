// The page of `charlstm serve`: type, and each character is coloured by a gate or state of the chosen cells,
// with the model's 10 likeliest next characters after the cursor. Talks only to this server's /api endpoints.
"use strict";

const $ = (id) => document.getElementById(id);
const GATES = new Set(["forget", "input", "output", "update", "reset"]);  // in [0, 1]; states are signed
const NEGATIVE = [33, 102, 172], MIDDLE = [247, 247, 247], POSITIVE = [178, 24, 43];  // as charlstm inspect
const state = { run: null, detail: null, result: null, sent: 0, timer: null, focus: null };

// --- colours: the blue-white-red scale of `charlstm inspect`, gates centred at 0.5, states at 0 ---------------

function colour(t) {
  t = Math.max(-1, Math.min(1, t));
  const end = t >= 0 ? POSITIVE : NEGATIVE, a = Math.abs(t);
  return MIDDLE.map((m, i) => Math.round(m + (end[i] - m) * a));
}

function scaleFor(quantity, values) {
  if (GATES.has(quantity)) return (v) => (v - 0.5) / 0.5;
  const m = Math.max(1e-6, ...values.map(Math.abs));  // the shown stretch uses the whole range, as inspect
  return (v) => v / m;
}

// --- talking to the server ---------------------------------------------------------------------------------

async function api(path, body) {
  const response = await fetch(path, body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  const data = await response.json();
  if (!response.ok) throw new Error(data.error + (data.hint ? ` (${data.hint})` : ""));
  return data;
}

function status(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

async function loadRuns() {
  const params = new URLSearchParams(location.search);
  const data = await api("/api/runs");
  for (const r of data.runs) {
    const option = new Option(`${r.name} (${r.cell} ${r.layers}x${r.hidden}, ${r.status})`, r.name);
    $("run").add(option);
  }
  const wanted = params.get("run");
  $("run").value = data.runs.some((r) => r.name === wanted) ? wanted : data.default;
  if (params.has("text")) $("text").value = params.get("text");
  await selectRun($("run").value);
}

async function selectRun(name) {
  status(`loading ${name}…`);
  const d = await api(`/api/runs/${encodeURIComponent(name)}`);
  state.run = name;
  state.detail = d;
  const m = d.config.model;
  const best = d.summary.best_val_bpc;
  $("runinfo").textContent = `${m.cell} ${m.layers}x${m.hidden} · step ${d.checkpoint}` +
    (best != null ? ` · best val ${best.toFixed(3)} bits/char` : "");
  $("quantity").replaceChildren(...d.quantities.map((q) => new Option(q, q)));
  $("layer").replaceChildren(...Array.from({ length: m.layers }, (_, i) => new Option(i + 1, i + 1)));
  $("layer").value = m.layers;
  $("cell").max = m.hidden - 1;
  $("top_k").max = d.vocab_size;
  const place = d.place_cell;
  if (place) {  // the bundled corpus: open on the cell that remembers the place, as `inspect --file` finds it
    $("quantity").value = place.quantity;
    $("layer").value = place.layer;
    $("mode").value = "one";
    $("cell").value = place.cell;
    $("placenote").textContent = `cell ${place.cell} holds the place name until its language ` +
      `(η² ${place.eta2.toFixed(2)}, chance ${place.chance.toFixed(2)}; high for ${place.high}, low for ${place.low})`;
  } else {
    $("mode").value = "top";
    $("placenote").textContent = "";
  }
  showMode();
  drawCurves(d.curves);
  $("config").textContent = JSON.stringify(d.config, null, 1);
  status("");
  analyze();
}

function analyzeSoon() {
  clearTimeout(state.timer);
  state.timer = setTimeout(analyze, 150);  // debounced: one request per pause in typing
}

async function analyze() {
  const text = $("text").value;
  if (!state.run || text === "") {
    state.result = null;
    render();
    return;
  }
  const ticket = ++state.sent;
  try {
    const result = await api("/api/analyze", { run: state.run, text, layer: Number($("layer").value),
                                              quantities: [$("quantity").value] });
    if (ticket !== state.sent) return;  // a newer request is on its way: this answer is stale
    state.result = result;
    status(`${result.chars.length} characters in ${(result.seconds * 1000).toFixed(0)} ms` + skippedNote(result.skipped));
  } catch (err) {
    if (ticket === state.sent) status(err.message, true);
    return;
  }
  render();
}

function skippedNote(skipped) {
  // Characters the run never saw are not read; the answer lists where they were.
  if (!skipped || !skipped.length) return "";
  const n = skipped.length;
  return ` · skipped ${n} character${n === 1 ? "" : "s"} not in the run's vocabulary (marked \ufffd)`;
}

function textIndexToChar(result, index) {
  // A position in the text (code points) -> the entry of result.chars at or before it (skipped ones are not there).
  const before = (result.skipped || []).filter((s) => s.index <= index).length;
  return index - before;
}

// --- drawing -----------------------------------------------------------------------------------------------

function chosenCells(result, quantity) {
  if ($("mode").value === "one") {
    const cell = Math.max(0, Math.min(result.hidden - 1, Number($("cell").value) || 0));
    return [{ cell, label: `cell ${cell}` }];
  }
  const picks = result.top_cells[quantity] || [];
  if (!picks.length) {  // a short text varies no property yet: show the first cells
    return Array.from({ length: Math.min(5, result.hidden) }, (_, c) => ({ cell: c, label: `cell ${c}` }));
  }
  return picks.map((p) => ({ cell: p.cell, label: `cell ${p.cell} · ${p.property} (r ${p.r.toFixed(2)})` }));
}

function render() {
  const rows = $("rows");
  rows.replaceChildren();
  const result = state.result;
  if (!result) {
    showNext();
    return;
  }
  const quantity = result.quantities[0];
  $("legend").innerHTML = GATES.has(quantity)
    ? `${quantity} gate: 0 <span class="bar"></span> 1 (0.5 white)`
    : `${quantity} state: −max <span class="bar"></span> +max of the row (0 white)`;
  for (const pick of chosenCells(result, quantity)) {
    const values = result.chars.map((c) => c.values[quantity][pick.cell]);
    const scale = scaleFor(quantity, values);
    const row = document.createElement("div");
    row.className = "row";
    const label = document.createElement("div");
    label.className = "label";
    label.textContent = `layer ${result.layer} · ${pick.label} · ${quantity} from ` +
      `${Math.min(...values).toFixed(2)} to ${Math.max(...values).toFixed(2)}`;
    const line = document.createElement("div");
    line.className = "line";
    const skipped = new Map((result.skipped || []).map((s) => [s.index, s.symbol]));
    let at = 0;  // the position in the text: the characters read, with the skipped ones between them
    const markSkipped = () => {
      while (skipped.has(at)) {
        const mark = document.createElement("span");
        mark.className = "ch skipped";
        mark.title = `${JSON.stringify(skipped.get(at))}: not in the run's vocabulary, skipped (not read)`;
        mark.textContent = "\ufffd";
        line.append(mark);
        at += 1;
      }
    };
    result.chars.forEach((c, i) => {
      markSkipped();
      at += 1;
      const span = document.createElement("span");
      const bg = colour(scale(values[i]));
      const dark = 0.2126 * bg[0] + 0.7152 * bg[1] + 0.0722 * bg[2] <= 128;
      span.className = "ch";
      span.dataset.i = i;
      span.style.background = `rgb(${bg.join(",")})`;
      span.style.color = dark ? "#fff" : "#000";
      span.title = `${JSON.stringify(c.symbol)}: ${quantity} ${values[i].toFixed(3)}`;
      span.textContent = c.symbol === "\n" ? "↵" : c.symbol;
      line.append(span);
      if (c.symbol === "\n") line.append(document.createElement("br"));
    });
    markSkipped();
    row.append(label, line);
    rows.append(row);
  }
  showNext();
}

function showNext(index) {
  // The distribution after the character before the cursor (or after the hovered character).
  const result = state.result;
  const list = $("next");
  list.replaceChildren();
  document.querySelectorAll(".ch.focus").forEach((s) => s.classList.remove("focus"));
  if (!result) {
    $("nextwhere").textContent = "";
    return;
  }
  if (index === undefined) {
    const text = $("text").value;
    index = Array.from(text.slice(0, $("text").selectionStart)).length - 1;  // code points, as the server counts
    index = textIndexToChar(result, index);
  }
  index = Math.min(index, result.chars.length - 1);
  const guesses = index >= 0 ? result.chars[index].next : result.start_next;
  $("nextwhere").textContent = index >= 0 ? `after ${JSON.stringify(result.chars[index].symbol)} (#${index + 1})`
                                          : "at the line start";
  document.querySelectorAll(`.ch[data-i="${index}"]`).forEach((s) => s.classList.add("focus"));
  for (const g of guesses || []) {
    const item = document.createElement("li");
    const sym = document.createElement("span");
    sym.className = "sym";
    sym.textContent = g.symbol === "\n" ? "↵" : g.symbol === " " ? "␣" : g.symbol;
    const bar = document.createElement("span");
    bar.className = "p";
    bar.style.width = `${(g.p * 100).toFixed(1)}%`;
    const num = document.createElement("span");
    num.className = "num";
    num.textContent = `${(g.p * 100).toFixed(1)}%`;
    item.append(sym, bar, num);
    list.append(item);
  }
}

function drawCurves(c) {
  const svg = $("curves");
  const W = 360, H = 180, L = 34, B = 16, T = 8, R = 8;
  const all = [...c.loss, ...c.val_loss];
  if (!all.length) {
    svg.innerHTML = `<text x="${W / 2}" y="${H / 2}" text-anchor="middle">no metrics yet</text>`;
    return;
  }
  const maxStep = Math.max(1, c.total_steps, ...c.steps, ...c.val_steps);
  const lo = Math.min(...all), hi = Math.max(...all), span = hi - lo || 1;
  const x = (s) => L + (s / maxStep) * (W - L - R);
  const y = (v) => T + (1 - (v - lo) / span) * (H - T - B);
  const path = (steps, values) =>
    steps.map((s, i) => `${i ? "L" : "M"}${x(s).toFixed(1)},${y(values[i]).toFixed(1)}`).join("");
  svg.innerHTML =
    `<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="#999"/>` +
    `<line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="#999"/>` +
    `<text x="${L - 3}" y="${T + 8}" text-anchor="end">${hi.toFixed(2)}</text>` +
    `<text x="${L - 3}" y="${H - B}" text-anchor="end">${lo.toFixed(2)}</text>` +
    `<text x="${W - R}" y="${H - 4}" text-anchor="end">step ${maxStep}</text>` +
    `<path d="${path(c.steps, c.loss)}" fill="none" stroke="#2166ac" stroke-width="1.2"/>` +
    `<path d="${path(c.val_steps, c.val_loss)}" fill="none" stroke="#b2182b" stroke-width="1.8"/>` +
    `<text x="${W - R}" y="${T + 8}" text-anchor="end"><tspan fill="#2166ac">train</tspan> ` +
    `<tspan fill="#b2182b">validation</tspan> (nats/char)</text>`;
}

// --- generating --------------------------------------------------------------------------------------------

// "\n", "\t" and "\\" typed into the stop box, read as `charlstm sample --stop` reads them.
function unescape(text) {
  return text.replace(/\\([nt\\r])/g, (_, c) => ({ n: "\n", t: "\t", r: "\r", "\\": "\\" })[c]);
}

async function generate() {
  const button = $("go");
  button.disabled = true;
  const body = { run: state.run, prompt: $("text").value, length: Number($("length").value),
                 temperature: Number($("temperature").value), top_k: Number($("top_k").value),
                 top_p: Number($("top_p").value), seed: Number($("seed").value) || 0,
                 stop: $("stop").value ? [unescape($("stop").value)] : [] };
  try {
    const response = await fetch("/api/sample", { method: "POST", headers: { "Content-Type": "application/json" },
                                                  body: JSON.stringify(body) });
    if (!response.ok) {
      const data = await response.json();
      throw new Error(data.error + (data.hint ? ` (${data.hint})` : ""));
    }
    // Server-sent events over a POST: read the stream and split it at blank lines.
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "", first = true;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const data = event.split("\n").find((l) => l.startsWith("data: "));
        if (!data || event.startsWith("event:")) continue;
        const message = JSON.parse(data.slice(6));
        const piece = message.text;
        $("text").value = first ? piece : $("text").value + piece;  // the first piece is the prompt as read
        if (first && message.skipped && message.skipped.length) status(`prompt:${skippedNote(message.skipped)}`);
        first = false;
        analyzeSoon();  // the new text is coloured as it arrives
      }
    }
  } catch (err) {
    status(err.message, true);
  } finally {
    button.disabled = false;
  }
}

// --- wiring ------------------------------------------------------------------------------------------------

function showMode() {
  $("cellbox").style.display = $("mode").value === "one" ? "" : "none";
}

for (const id of ["temperature", "top_k", "top_p", "length"]) {
  const out = document.querySelector(`output[for="${id}"]`);
  const update = () => { out.textContent = $(id).value; };
  $(id).addEventListener("input", update);
  update();
}
$("text").addEventListener("input", analyzeSoon);
for (const ev of ["keyup", "click", "select"]) $("text").addEventListener(ev, () => showNext());
$("rows").addEventListener("mouseover", (e) => { if (e.target.dataset.i) showNext(Number(e.target.dataset.i)); });
$("quantity").addEventListener("change", analyze);
$("layer").addEventListener("change", analyze);
$("mode").addEventListener("change", () => { showMode(); render(); });
$("cell").addEventListener("input", render);
$("run").addEventListener("change", () => selectRun($("run").value).catch((err) => status(err.message, true)));
$("go").addEventListener("click", generate);
loadRuns().catch((err) => status(err.message, true));
