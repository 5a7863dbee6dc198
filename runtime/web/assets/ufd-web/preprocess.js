// Step 2 in the browser: RGB pixels become the encoder's units, as runtime/preprocess.py
// and runtime/units.py make them: torchvision's centre crop (zero padding), Pillow's
// two-pass resampling in its fixed-point arithmetic (so resized pixels are Pillow's,
// byte for byte), B-Free's grid crops, SPAI's tiles, the `whole` image under its cap,
// then ToTensor + Normalize in float32 arithmetic.

import { centerCrop } from './crop.js';
import { fiveGridCrops, tiles, whole } from './units.js';

const PRECISION_BITS = 22;
const FILTERS = {
  bilinear: { support: 1.0, f: (x) => { x = Math.abs(x); return x < 1 ? 1 - x : 0; } },
  bicubic: {
    support: 2.0,
    f: (x) => {
      const a = -0.5;
      x = Math.abs(x);
      if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
      if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
      return 0;
    },
  },
};

function coefficients(inSize, outSize, filter) {
  const scale = inSize / outSize, filterscale = Math.max(scale, 1.0);
  const support = filter.support * filterscale, ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2), kk = new Float64Array(outSize * ksize);
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale, ss = 1.0 / filterscale;
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const xmax = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      const w = filter.f((x + xmin - center + 0.5) * ss);
      kk[xx * ksize + x] = w;
      ww += w;
    }
    for (let x = 0; x < xmax; x++) if (ww !== 0) kk[xx * ksize + x] /= ww;
    bounds[2 * xx] = xmin;
    bounds[2 * xx + 1] = xmax;
  }
  const fixed = new Float64Array(kk.length);
  for (let i = 0; i < kk.length; i++) {
    const v = kk[i] * (1 << PRECISION_BITS);
    fixed[i] = Math.trunc(kk[i] < 0 ? v - 0.5 : v + 0.5);
  }
  return { ksize, bounds, k: fixed };
}

const clip8 = (ss) => Math.min(255, Math.max(0, Math.floor(ss / (1 << PRECISION_BITS))));

function horizontalPass(image, outW, h, first, rows) {
  const { width, rgb } = image, half = 1 << (PRECISION_BITS - 1);
  const out = new Uint8Array(outW * rows * 3);
  for (let y = 0; y < rows; y++) {
    const src = (y + first) * width * 3;
    for (let xx = 0; xx < outW; xx++) {
      const xmin = h.bounds[2 * xx], xmax = h.bounds[2 * xx + 1], k = xx * h.ksize;
      let s0 = half, s1 = half, s2 = half;
      for (let x = 0; x < xmax; x++) {
        const p = src + (x + xmin) * 3, c = h.k[k + x];
        s0 += rgb[p] * c; s1 += rgb[p + 1] * c; s2 += rgb[p + 2] * c;
      }
      const o = (y * outW + xx) * 3;
      out[o] = clip8(s0); out[o + 1] = clip8(s1); out[o + 2] = clip8(s2);
    }
  }
  return { width: outW, height: rows, rgb: out };
}

function verticalPass(image, outH, v) {
  const { width, rgb } = image, half = 1 << (PRECISION_BITS - 1);
  const out = new Uint8Array(width * outH * 3);
  for (let yy = 0; yy < outH; yy++) {
    const ymin = v.bounds[2 * yy], ymax = v.bounds[2 * yy + 1], k = yy * v.ksize;
    for (let xx = 0; xx < width; xx++) {
      let s0 = half, s1 = half, s2 = half;
      for (let y = 0; y < ymax; y++) {
        const p = ((y + ymin) * width + xx) * 3, c = v.k[k + y];
        s0 += rgb[p] * c; s1 += rgb[p + 1] * c; s2 += rgb[p + 2] * c;
      }
      const o = (yy * width + xx) * 3;
      out[o] = clip8(s0); out[o + 1] = clip8(s1); out[o + 2] = clip8(s2);
    }
  }
  return { width, height: outH, rgb: out };
}

/**
 * Pillow's `Image.resize((outW, outH), BILINEAR | BICUBIC | NEAREST)` of RGB pixels (8 bpc).
 * The pass order is Pillow 13's: vertical first when the height shrinks by more than
 * twice what the width does (Pillow before 13 always went horizontal first).
 */
export function resize(image, outW, outH, interpolation) {
  if (outW === image.width && outH === image.height) return image;
  if (interpolation === 'nearest') return resizeNearest(image, outW, outH);
  const filter = FILTERS[interpolation];
  const dy = image.height - outH, horizontalFirst = !(dy > 0 && dy > (image.width - outW) * 2);
  const needH = outW !== image.width, needV = outH !== image.height;
  if (!horizontalFirst) {
    const once = needV ? verticalPass(image, outH, coefficients(image.height, outH, filter)) : image;
    return needH ? horizontalPass(once, outW, coefficients(image.width, outW, filter), 0, outH) : once;
  }
  const vert = coefficients(image.height, outH, filter);
  let out = image;
  if (needH) {
    const first = vert.bounds[0], last = vert.bounds[2 * outH - 2] + vert.bounds[2 * outH - 1];
    for (let i = 0; i < outH; i++) vert.bounds[2 * i] -= first;
    out = horizontalPass(image, outW, coefficients(image.width, outW, filter), first, last - first);
  }
  return needV ? verticalPass(out, outH, vert) : out;
}

/** Pillow's NEAREST resize: an affine scale whose source position accumulates per pixel. */
function resizeNearest(image, outW, outH) {
  const { width, height, rgb } = image, out = new Uint8Array(outW * outH * 3);
  const ax = width / outW, ay = height / outH, xin = new Int32Array(outW);
  let xo = ax * 0.5;
  for (let x = 0; x < outW; x++) { xin[x] = Math.min(Math.trunc(xo), width - 1); xo += ax; }
  let yo = ay * 0.5;
  for (let y = 0; y < outH; y++) {
    const yi = Math.min(Math.trunc(yo), height - 1);
    yo += ay;
    for (let x = 0; x < outW; x++) {
      const s = (yi * width + xin[x]) * 3, o = (y * outW + x) * 3;
      out[o] = rgb[s]; out[o + 1] = rgb[s + 1]; out[o + 2] = rgb[s + 2];
    }
  }
  return { width: outW, height: outH, rgb: out };
}

function resizeCenterCrop(image, p) {
  const { width, height } = image, wide = width > height;
  const short = wide ? height : width, long = wide ? width : height;
  const newLong = Math.trunc((p.resize_size * long) / short);
  const [w, h] = wide ? [newLong, p.resize_size] : [p.resize_size, newLong];
  return centerCrop(resize(image, w, h, p.resize_interpolation), p.crop_size);
}

/** The image's units ({units: [{width, height, rgb}], note}) for preprocess config `p`. */
export function unitsOf(image, p) {
  if (p.mode === 'center_crop') return { units: [centerCrop(image, p.crop_size)], note: null };
  if (p.mode === 'resize_center_crop') return { units: [resizeCenterCrop(image, p)], note: null };
  if (p.mode === 'resize') {
    const same = image.width === p.crop_size && image.height === p.crop_size;
    return { units: [same ? image : resize(image, p.crop_size, p.crop_size, p.resize_interpolation)], note: null };
  }
  if (p.mode === 'whole') return whole(image, p);
  if (p.mode === 'five_crops') return fiveGridCrops(image, p);
  if (p.mode === 'tiles') return tiles(image, p);
  throw new Error(`unknown preprocessing mode ${p.mode}: rebuild the page with this ufd`);
}

/** ToTensor + Normalize of units of one size: float32 NCHW, in float32 arithmetic. */
export function normalise(units, mean, std) {
  const { width, height } = units[0], plane = width * height;
  const out = new Float32Array(units.length * 3 * plane);
  const m = mean.map(Math.fround), s = std.map(Math.fround);
  units.forEach((u, n) => {
    for (let c = 0; c < 3; c++) {
      const base = (n * 3 + c) * plane;
      for (let i = 0; i < plane; i++) {
        out[base + i] = Math.fround(Math.fround(Math.fround(u.rgb[3 * i + c] / 255) - m[c]) / s[c]);
      }
    }
  });
  return out;
}
