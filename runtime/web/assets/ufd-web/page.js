// The page: drop or pick images, one card each (thumbnail, verdict, p(generated) bar with
// the threshold and the unsure band), records as JSON lines. For automation:
// `window.ufdState` ('loading', 'ready', 'failed'), `window.ufdParity` (each graph
// measured here), `window.ufdRecords` (one per image, ufd-detect's jsonl fields),
// `window.ufdJsonl()` (them as JSON lines), `window.ufdBusy` (images still queued),
// `window.ufdIdle` (every image picked so far has its card and the status says so) and
// `window.ufd` (the engine).
import { Engine } from './engine.js';

const $ = (id) => document.getElementById(id);
const records = [];
const queue = [];
let engine = null, running = false, scoredMs = [];
window.ufdRecords = records;
window.ufdState = 'loading';
window.ufdBusy = 0;
window.ufdIdle = true; // false from a pick or drop until its last card and status are shown
window.ufdTimings = []; // per scored image: total, decode_preprocess, encoder (ms)

const VERDICT = { fake: 'Likely generated', real: 'Likely camera-made', unsure: 'Unsure' }; // ufd-serve's words

/** "312 ms per image": the median after the first (which warms the graph up). */
function speed(ms) {
  const warm = (ms.length > 1 ? ms.slice(1) : ms).slice().sort((a, b) => a - b);
  const median = warm[Math.floor(warm.length / 2)];
  return `${median.toFixed(0)} ms per image (median of ${warm.length}${ms.length > 1 ? ' after the first' : ''})`;
}

function percent(x) { return `${(100 * x).toFixed(1)}%`; }

/** An element with a class (and text): the pieces of a card. */
function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function card(file, record) {
  const div = el('div', `card ${record.error ? 'error' : record.label}`);
  div.setAttribute('role', 'article');
  if (!record.error) {
    const img = el('img');
    img.alt = file.name;
    img.src = URL.createObjectURL(file);
    div.append(img);
  }
  div.append(el('div', 'verdict', record.error ? 'Could not score' : VERDICT[record.label]), el('div', 'muted', file.name));
  if (record.error) {
    div.append(el('div', 'why', record.error));
    return div;
  }
  const { threshold, real_below: realBelow } = engine.site.method;
  const bar = el('div', 'bar');
  bar.setAttribute('role', 'meter');
  bar.setAttribute('aria-label', `p(generated) ${percent(record.prob)}`);
  if (realBelow !== null) {
    const band = el('div', 'band');
    band.style.left = percent(realBelow);
    band.style.width = percent(threshold - realBelow);
    bar.append(band);
  }
  const fill = el('span');
  fill.style.width = percent(record.prob);
  const mark = el('i');
  mark.style.left = percent(threshold);
  bar.append(fill, mark);
  div.append(bar, el('div', 'muted', `p(generated) ${record.prob.toFixed(3)} · logit ${record.logit.toFixed(3)}`));
  if (record.input) div.append(el('div', 'muted', record.input));
  return div;
}

function progress() {
  const failed = records.filter((r) => r.error).length, done = records.length;
  const total = done + queue.length + (running ? 1 : 0);
  const summary = `${done} image${done === 1 ? '' : 's'}: ${done - failed} scored` + (failed ? `, ${failed} could not be` : '');
  $('progress').textContent = running ? `scoring ${done + 1} of ${total}…` : summary;
  $('cards').setAttribute('aria-busy', String(running));
}

async function drain() {
  if (running) return;
  running = true;
  while (queue.length) {
    progress();
    const file = queue.shift();
    const bytes = new Uint8Array(await file.arrayBuffer());
    const { record, ms, timing } = await engine.score(file.name, bytes);
    records.push(record);
    if (!record.error) {
      scoredMs.push(ms);
      window.ufdTimings.push(timing);
    }
    $('cards').append(card(file, record));
    window.ufdBusy = queue.length;
    if (scoredMs.length) $('speed').textContent = ` · ${speed(scoredMs)}`;
    $('download').disabled = false;
    await new Promise((resolve) => setTimeout(resolve, 0)); // let the page paint between images
  }
  running = false;
  progress();
  window.ufdIdle = true;
}

function add(files) {
  if (!engine || window.ufdState !== 'ready') return;
  window.ufdIdle = false;
  queue.push(...files);
  window.ufdBusy = queue.length;
  drain();
}

/** The records as ufd-detect --format jsonl writes them (fields in its order). */
function jsonl() {
  return records.map((r) => JSON.stringify(r)).join('\n') + '\n';
}
window.ufdJsonl = jsonl;

function download() {
  const text = jsonl();
  const a = document.createElement('a');
  a.href = URL.createObjectURL(new Blob([text], { type: 'application/x-ndjson' }));
  a.download = 'ufd-records.jsonl';
  a.click();
}

function describe(m) {
  if (m.error) return `${m.precision} (${m.ep}): cannot run here`;
  const t = m.tolerance;
  const logit = t.max_abs_logit === null ? '' : `, |Δlogit| ${m.max_abs_logit.toFixed(4)} (≤ ${t.max_abs_logit})`;
  const when = m.cached ? ` (measured in this browser on ${m.measured_utc.slice(0, 10)})` : '';
  return `${m.precision} (${m.ep}): cosine ${m.min_feature_cosine.toFixed(6)} (≥ ${t.min_feature_cosine})${logit}${when}`;
}

async function main() {
  const site = await (await fetch('web.json')).json();
  $('detector').textContent = `${site.detector} (${site.model})`;
  const t = site.method;
  $('threshold').textContent = `fake above p = ${t.threshold}` + (t.real_below === null ? '' : `, unsure above ${t.real_below}`);
  engine = new Engine(site);
  window.ufd = engine;
  const took = await engine.open((text) => { $('parity').textContent = text; });
  window.ufdParity = engine.parity;
  const threads = self.crossOriginIsolated ? 'threads on' : 'one thread: serve with COOP/COEP headers for more';
  $('parity').textContent = `took the ${took.precision} graph on ${took.ep}: ${engine.parity.map(describe).join('; ')} on ${took.n_probes} probes (${threads}).`;
  for (const el of [$('files')]) el.disabled = false;
  $('drop').setAttribute('aria-disabled', 'false');
  window.ufdState = 'ready';
}

$('files').addEventListener('change', (e) => { add([...e.target.files]); e.target.value = ''; });
$('download').addEventListener('click', download);
$('pick').addEventListener('keydown', (e) => { // the hidden input, by keyboard
  if ((e.key === 'Enter' || e.key === ' ') && !$('files').disabled) { e.preventDefault(); $('files').click(); }
});
const drop = $('drop');
drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', (e) => { e.preventDefault(); drop.classList.remove('over'); add([...e.dataTransfer.files]); });
main().catch((e) => {
  console.error(e);
  window.ufdState = 'failed';
  window.ufdError = String(e.message || e);
  $('parity').textContent = `cannot run here: ${window.ufdError}`;
});
