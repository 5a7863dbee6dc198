// Steps 3-6 in the browser: encoder graph, feature, linear head, record, as ufd-detect
// makes them. On first load each graph is checked against the bundle's parity probes
// (the features the torch fp32 model gave them at export) and the first one in the
// page's order (fastest first) that keeps the bundle's tolerance is taken: `auto`'s rule.
// Pages built with --webgpu try the fp16/fp32 graphs on the GPU first where the browser
// has a WebGPU adapter; int8 always runs on WebAssembly (SIMD, threads when isolated).
import { decodeImage, ImageError } from './decode.js';
import { normalise, unitsOf } from './preprocess.js';

async function fetchBytes(url, sha256) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`cannot load ${url}: HTTP ${response.status}`);
  const bytes = new Uint8Array(await response.arrayBuffer());
  if (sha256) {
    const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
    const hex = Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('');
    if (hex !== sha256) throw new Error(`${url} does not match its sha256: rebuild the page with ufd-bundle web`);
  }
  return bytes;
}

function sigmoid(logit) {
  if (logit >= 0) return 1 / (1 + Math.exp(-logit));
  const e = Math.exp(logit);
  return e / (1 + e);
}

function cosine(a, b) {
  let dot = 0, na = 0, nb = 0;
  for (let i = 0; i < a.length; i++) { dot += a[i] * b[i]; na += a[i] * a[i]; nb += b[i] * b[i]; }
  return dot / Math.max(Math.sqrt(na) * Math.sqrt(nb), Number.MIN_VALUE);
}

let ort = null;

/**
 * Where a graph's parity measurement is kept in this browser (localStorage): the graph,
 * the probes, the head and aggregator, onnxruntime-web's version and the browser. WebAssembly
 * arithmetic is the same on every CPU, so nothing else changes the numbers; GPU
 * measurements are not kept (a driver update may change them).
 */
function parityKey(site, graph) {
  if (graph.ep !== 'wasm') return null;
  const parts = [graph.sha256, site.probes.sha256, site.head.sha256, site.aggregator?.sha256 ?? '',
    ort.env.versions.web, navigator.userAgent];
  return `ufd-parity:${parts.join('|')}`;
}

function remembered(site, graph) {
  const key = parityKey(site, graph);
  try {
    const found = key && JSON.parse(localStorage.getItem(key));
    return found ? { ...found, cached: true } : null;
  } catch (e) {
    return null; // storage off (a private window): measure again
  }
}

function remember(site, graph, measured) {
  const key = parityKey(site, graph);
  try {
    if (key) localStorage.setItem(key, JSON.stringify({ ...measured, measured_utc: new Date().toISOString() }));
  } catch (e) { /* storage full or off: measured again next time */ }
}

/** The graphs to try, in order: on the GPU first (WebGPU pages, where there is one). */
async function candidates(site) {
  let adapter = null;
  if (site.webgpu && navigator.gpu) adapter = await navigator.gpu.requestAdapter().catch(() => null);
  ort = await import(adapter ? '../ort/ort.webgpu.min.mjs' : '../ort/ort.wasm.min.mjs');
  const onGpu = adapter ? site.graphs.filter((g) => g.precision.startsWith('fp')) : [];
  const onCpu = site.graphs.filter((g) => g.precision !== 'fp16');
  return [...onGpu.map((g) => ({ ...g, ep: 'webgpu' })), ...onCpu.map((g) => ({ ...g, ep: 'wasm' }))];
}

export class Engine {
  /** @param {object} site the page's web.json */
  constructor(site) {
    this.site = site;
    this.parity = [];
    this.encoder = null;
  }

  async session(file, sha256, ep = 'wasm') {
    const bytes = await fetchBytes(`model/${file}`, sha256);
    return ort.InferenceSession.create(bytes, { executionProviders: [ep], graphOptimizationLevel: 'all' });
  }

  /** Load the head (and aggregator), then the first graph that keeps the tolerance here. */
  async open(status) {
    const graphs = await candidates(this.site);
    ort.env.wasm.numThreads = self.crossOriginIsolated ? Math.min(navigator.hardwareConcurrency || 1, 8) : 1;
    ort.env.wasm.wasmPaths = new URL('ort/', document.baseURI).href;
    // inference off the page's thread (`?proxy=0`: on it, for measuring what the worker costs)
    ort.env.wasm.proxy = !graphs.some((g) => g.ep === 'webgpu') && new URLSearchParams(location.search).get('proxy') !== '0';
    const { head, aggregator } = this.site;
    this.head = await this.session(head.file, head.sha256);
    this.aggregator = aggregator ? await this.session(aggregator.file, aggregator.sha256) : null;
    let probes = null;
    for (const graph of graphs) {
      const known = remembered(this.site, graph);
      if (known && !known.ok) { this.parity.push(known); continue; } // measured before: skip it
      const mb = (graph.size / 1e6).toFixed(1);
      if (!known) probes ??= await this.probes(); // fetched once, and only to measure
      status(known ? `loading the ${graph.precision} graph (${mb} MB, ${graph.ep})...`
        : `checking the ${graph.precision} graph (${mb} MB, ${graph.ep}) on ${probes.crops.length} probes...`);
      let encoder;
      try {
        encoder = await this.session(graph.file, graph.sha256, graph.ep);
      } catch (e) {
        if (graph.ep === 'wasm') throw e;
        this.parity.push({ precision: graph.precision, ep: graph.ep, ok: false, error: String(e.message || e) });
        continue; // this GPU cannot run it: the next graph
      }
      const measured = known ?? { ...(await this.measure(encoder, graph, probes)), ep: graph.ep };
      if (!known) remember(this.site, graph, measured);
      this.parity.push(measured);
      if (measured.ok) { this.encoder = encoder; this.graph = graph; return measured; }
      await encoder.release();
    }
    throw new Error('no graph keeps the bundle\'s tolerance in this browser: use ufd-detect instead');
  }

  async probes() {
    const p = this.site.probes, bytes = await fetchBytes(`model/${p.file}`, p.sha256);
    const [n, h, w] = p.crops_shape, per = h * w * 3, dim = p.features_shape[1];
    const features = new Float32Array(bytes.buffer.slice(n * per, n * per + n * dim * 4));
    const crops = [];
    for (let i = 0; i < n; i++) crops.push({ width: w, height: h, rgb: bytes.subarray(i * per, (i + 1) * per) });
    return { crops, features, dim };
  }

  async encode(encoder, graph, unit) {
    const { mean, std } = this.site.preprocess;
    const pixels = new ort.Tensor('float32', normalise([unit], mean, std), [1, 3, unit.height, unit.width]);
    const out = await encoder.run({ [graph.input]: pixels });
    return out[graph.output].data;
  }

  /** A probe's logit: through the aggregator first in `tiles` bundles (a probe is one tile). */
  async probeLogit(feature) {
    return this.logit(this.site.preprocess.mode === 'tiles' ? await this.aggregate([feature]) : feature);
  }

  async logit(feature) {
    const f = new Float32Array(feature); // a copy: a proxied run takes its input's buffer
    const out = await this.head.run({ [this.site.head.input]: new ort.Tensor('float32', f, [1, f.length]) });
    return out[this.site.head.output].data[0];
  }

  async aggregate(rows) {
    const dim = rows[0].length, flat = new Float32Array(rows.length * dim);
    rows.forEach((r, i) => flat.set(r, i * dim));
    const a = this.site.aggregator;
    const out = await this.aggregator.run({ [a.input]: new ort.Tensor('float32', flat, [1, rows.length, dim]) });
    return out[a.output].data;
  }

  async measure(encoder, graph, probes) {
    let low = Infinity, worst = 0, ms = 0;
    for (let i = 0; i < probes.crops.length; i++) {
      const t0 = performance.now();
      const got = await this.encode(encoder, graph, probes.crops[i]);
      ms += performance.now() - t0;
      const want = probes.features.subarray(i * probes.dim, (i + 1) * probes.dim);
      low = Math.min(low, cosine(got, want));
      worst = Math.max(worst, Math.abs((await this.probeLogit(got)) - (await this.probeLogit(want))));
    }
    const t = this.site.probes.tolerance;
    const ok = low >= t.min_feature_cosine && (t.max_abs_logit === null || worst <= t.max_abs_logit);
    return {
      precision: graph.precision, n_probes: probes.crops.length, min_feature_cosine: low,
      max_abs_logit: worst, tolerance: t, ok, ms_per_probe: ms / probes.crops.length,
    };
  }

  /** The image's feature: its units encoded one per call (as ufd runs batch-variant graphs). */
  async feature(units) {
    const rows = [];
    for (const unit of units) rows.push(await this.encode(this.encoder, this.graph, unit));
    const mode = this.site.preprocess.mode;
    if (mode === 'tiles') return this.aggregate(rows);
    if (mode !== 'five_crops') return rows[0];
    const mean = new Float32Array(rows[0].length);
    for (let d = 0; d < mean.length; d++) {
      let s = 0;
      for (const r of rows) s = Math.fround(s + r[d]); // numpy's float32 sum over axis 0
      mean[d] = Math.fround(s / rows.length);
    }
    return mean;
  }

  /** Decode and preprocess a file: {units, note}. */
  async unitsOf(bytes) {
    const p = this.site.preprocess;
    const policy = { maxPixels: this.site.max_pixels, exifTranspose: p.exif_transpose, reasons: this.site.reasons };
    const image = await decodeImage(bytes, policy);
    return unitsOf(image, p);
  }

  /** One record with the fields of `ufd-detect --format jsonl`, and where the time went (ms). */
  async score(name, bytes) {
    const record = { path: name };
    for (const field of this.site.fields.slice(1)) record[field] = null;
    const t0 = performance.now();
    let t1 = t0, t2 = t0;
    try {
      const { units, note } = await this.unitsOf(bytes);
      t1 = performance.now();
      const feature = await this.feature(units);
      t2 = performance.now();
      const logit = await this.logit(feature);
      const { threshold, real_below: realBelow } = this.site.method;
      const prob = sigmoid(logit);
      let label = prob > threshold ? 'fake' : 'real';
      if (label === 'real' && realBelow !== null && prob > realBelow) label = 'unsure';
      Object.assign(record, { logit, prob, label });
      if ('input' in record) record.input = note;
    } catch (e) {
      if (!(e instanceof ImageError)) console.error(e);
      record.error = e instanceof ImageError ? e.message : `inference failed: ${e.message || e}`;
    }
    const ms = performance.now() - t0;
    return { record, ms, timing: { total: ms, decode_preprocess: t1 - t0, encoder: t2 - t1 } };
  }
}
