// GIF to RGB as Pillow's first frame `convert("RGB")` gives it: the frame's palette
// (local, else global) looked up, transparency ignored, pixels outside the first
// frame's rectangle the transparent index (or 0). Decoded here: a canvas would make
// transparent pixels black.

function readBlocks(bytes, at, ImageError) {
  const parts = [];
  for (;;) {
    if (at >= bytes.length) throw new ImageError('damaged image data: truncated GIF file');
    const size = bytes[at];
    if (size === 0) return { data: parts, next: at + 1 };
    if (at + 1 + size > bytes.length) throw new ImageError('damaged image data: truncated GIF file');
    parts.push(bytes.subarray(at + 1, at + 1 + size));
    at += 1 + size;
  }
}

function lzw(parts, minSize, count, ImageError) {
  const data = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) { data.set(p, o); o += p.length; }
  const clear = 1 << minSize, end = clear + 1;
  const prefix = new Int32Array(4096), suffix = new Uint8Array(4096), first = new Uint8Array(4096);
  const out = new Uint8Array(count), stack = new Uint8Array(4097);
  let size = minSize + 1, next = end + 1, old = -1, written = 0, bits = 0, buffer = 0, pos = 0;
  for (let i = 0; i < clear; i++) { suffix[i] = i; first[i] = i; prefix[i] = -1; }
  while (written < count) {
    while (bits < size) {
      if (pos >= data.length) throw new ImageError('damaged image data: truncated GIF data');
      buffer |= data[pos++] << bits; bits += 8;
    }
    const code = buffer & ((1 << size) - 1);
    buffer >>= size; bits -= size;
    if (code === clear) { size = minSize + 1; next = end + 1; old = -1; continue; }
    if (code === end) break;
    let top = 0, c = code;
    if (old === -1) {
      if (code >= clear) throw new ImageError('damaged image data: bad GIF code');
      out[written++] = code; old = code; continue;
    }
    if (code > next || code === next && next >= 4096) throw new ImageError('damaged image data: bad GIF code');
    if (code === next) { stack[top++] = first[old]; c = old; }
    while (c >= clear) { stack[top++] = suffix[c]; c = prefix[c]; }
    stack[top++] = c;
    if (next < 4096) {
      prefix[next] = old; suffix[next] = c; first[next] = first[old];
      next++;
      if (next === 1 << size && size < 12) size++;
    }
    while (top > 0 && written < count) out[written++] = stack[--top];
    old = code;
  }
  return out;
}

function deinterlace(indices, width, height) {
  const out = new Uint8Array(indices.length);
  let row = 0;
  for (const [start, step] of [[0, 8], [4, 8], [2, 4], [1, 2]]) {
    for (let y = start; y < height; y += step, row++) {
      out.set(indices.subarray(row * width, (row + 1) * width), y * width);
    }
  }
  return out;
}

/** Decode a GIF's first frame to {width, height, rgb}. */
export async function decodeGif(bytes, ImageError) {
  const width = bytes[6] | (bytes[7] << 8), height = bytes[8] | (bytes[9] << 8), flags = bytes[10];
  let at = 13, palette = null, transparent = null;
  if (flags & 0x80) { palette = bytes.subarray(at, at + 3 * (2 << (flags & 7))); at += 3 * (2 << (flags & 7)); }
  for (;;) {
    const block = bytes[at];
    if (block === 0x21) {
      const label = bytes[at + 1];
      if (label === 0xf9 && bytes[at + 2] >= 4 && bytes[at + 3] & 1) transparent = bytes[at + 6];
      at = readBlocks(bytes, at + 2, ImageError).next;
    } else if (block === 0x2c) {
      break;
    } else {
      throw new ImageError('damaged image data: no image in this GIF');
    }
  }
  if (at + 10 > bytes.length) throw new ImageError('damaged image data: truncated GIF file');
  const left = bytes[at + 1] | (bytes[at + 2] << 8), top = bytes[at + 3] | (bytes[at + 4] << 8);
  const w = bytes[at + 5] | (bytes[at + 6] << 8), h = bytes[at + 7] | (bytes[at + 8] << 8);
  const local = bytes[at + 9];
  at += 10;
  if (local & 0x80) { palette = bytes.subarray(at, at + 3 * (2 << (local & 7))); at += 3 * (2 << (local & 7)); }
  const minSize = bytes[at];
  if (minSize < 1 || minSize > 11) throw new ImageError('damaged image data: bad GIF code size');
  const { data } = readBlocks(bytes, at + 1, ImageError);
  let indices = lzw(data, minSize, w * h, ImageError);
  if (local & 0x40) indices = deinterlace(indices, w, h);
  const canvas = new Uint8Array(width * height).fill(transparent ?? 0);
  for (let y = 0; y < h && top + y < height; y++) {
    for (let x = 0; x < w && left + x < width; x++) canvas[(top + y) * width + left + x] = indices[y * w + x];
  }
  const rgb = new Uint8Array(width * height * 3);
  for (let p = 0; p < canvas.length; p++) {
    const i = canvas[p];
    if (palette && 3 * i + 2 < palette.length) {
      rgb[3 * p] = palette[3 * i]; rgb[3 * p + 1] = palette[3 * i + 1]; rgb[3 * p + 2] = palette[3 * i + 2];
    } else if (!palette) {
      rgb[3 * p] = rgb[3 * p + 1] = rgb[3 * p + 2] = i; // no palette: Pillow reads grey levels
    }
  }
  return { width, height, rgb };
}
