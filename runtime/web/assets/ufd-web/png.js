// PNG to RGB exactly as Pillow's `convert("RGB")` gives it (alpha dropped, not
// composited; 16-bit samples `>> 8`; 1/2/4-bit grey scaled to 0..255; palettes looked
// up), decoded here because a canvas premultiplies alpha and loses what lies under it.
// Only the first image (IDAT) of an APNG, as Pillow's frame 0. Inflate is the
// browser's DecompressionStream.

const CHANNELS = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 };
const ADAM7 = [
  [0, 0, 8, 8], [4, 0, 8, 8], [0, 4, 4, 8], [2, 0, 4, 4],
  [0, 2, 2, 4], [1, 0, 2, 2], [0, 1, 1, 2],
]; // x0, y0, dx, dy

function chunks(bytes, ImageError) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = { idat: [], palette: null, header: null };
  for (let i = 8; ; ) {
    if (i + 8 > bytes.length) throw new ImageError('damaged image data: truncated PNG file');
    const length = view.getUint32(i), type = String.fromCharCode(...bytes.subarray(i + 4, i + 8));
    if (i + 12 + length > bytes.length) throw new ImageError('damaged image data: truncated PNG file');
    const data = bytes.subarray(i + 8, i + 8 + length);
    if (type === 'IHDR') out.header = data;
    else if (type === 'PLTE') out.palette = data;
    else if (type === 'IDAT') out.idat.push(data);
    else if (type === 'IEND') return out;
    i += 12 + length;
  }
}

async function inflate(parts, ImageError) {
  const stream = new Blob(parts).stream().pipeThrough(new DecompressionStream('deflate'));
  try {
    return new Uint8Array(await new Response(stream).arrayBuffer());
  } catch (e) {
    throw new ImageError('damaged image data: broken PNG data stream');
  }
}

function paeth(a, b, c) {
  const p = a + b - c, pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
  if (pa <= pb && pa <= pc) return a;
  return pb <= pc ? b : c;
}

/** Unfilter one (sub)image of `rows` scanlines of `rowBytes` bytes, starting at `at`. */
function unfilter(raw, at, rows, rowBytes, bpp, ImageError) {
  const out = new Uint8Array(rows * rowBytes);
  for (let y = 0; y < rows; y++) {
    const filter = raw[at], src = at + 1, row = y * rowBytes, up = row - rowBytes;
    if (src + rowBytes > raw.length) throw new ImageError('damaged image data: truncated PNG data');
    for (let x = 0; x < rowBytes; x++) {
      const a = x >= bpp ? out[row + x - bpp] : 0, b = y > 0 ? out[up + x] : 0;
      const c = x >= bpp && y > 0 ? out[up + x - bpp] : 0, v = raw[src + x];
      let r;
      if (filter === 0) r = v;
      else if (filter === 1) r = v + a;
      else if (filter === 2) r = v + b;
      else if (filter === 3) r = v + ((a + b) >> 1);
      else if (filter === 4) r = v + paeth(a, b, c);
      else throw new ImageError('damaged image data: bad PNG filter type');
      out[row + x] = r & 0xff;
    }
    at = src + rowBytes;
  }
  return { pixels: out, next: at };
}

/** Sample `s` of a row (bit depths 1, 2, 4, 8; 16 gives its high byte). */
function sample(row, offset, s, depth) {
  if (depth === 8) return row[offset + s];
  if (depth === 16) return row[offset + 2 * s];
  const perByte = 8 / depth, byte = row[offset + Math.floor(s / perByte)];
  const shift = 8 - depth * ((s % perByte) + 1);
  return (byte >> shift) & ((1 << depth) - 1);
}

function toRgb(header, palette, ImageError) {
  const { colorType, depth } = header;
  const scale = colorType === 3 ? 1 : depth === 16 || depth === 8 ? 1 : 255 / ((1 << depth) - 1);
  const colours = palette ? Math.floor(palette.length / 3) : 0;
  return (row, offset, x, out, o) => {
    const n = CHANNELS[colorType];
    if (colorType === 3) {
      const index = sample(row, offset, x, depth);
      if (index >= colours) { out[o] = out[o + 1] = out[o + 2] = 0; return; }
      out[o] = palette[3 * index]; out[o + 1] = palette[3 * index + 1]; out[o + 2] = palette[3 * index + 2];
    } else if (colorType === 0 || colorType === 4) {
      const grey = Math.round(sample(row, offset, x * n, depth) * scale);
      out[o] = out[o + 1] = out[o + 2] = grey;
    } else {
      for (let c = 0; c < 3; c++) out[o + c] = sample(row, offset, x * n + c, depth);
    }
  };
}

/** Decode a PNG file to {width, height, rgb}. */
export async function decodePng(bytes, ImageError) {
  const found = chunks(bytes, ImageError);
  if (!found.header || found.header.length < 13) throw new ImageError('damaged image data: no PNG header');
  const h = new DataView(found.header.buffer, found.header.byteOffset, 13);
  const header = {
    width: h.getUint32(0), height: h.getUint32(4), depth: h.getUint8(8),
    colorType: h.getUint8(9), interlace: h.getUint8(12),
  };
  if (!(header.colorType in CHANNELS) || ![1, 2, 4, 8, 16].includes(header.depth)) {
    throw new ImageError('damaged image data: unknown PNG colour type or bit depth');
  }
  if (header.colorType === 3 && !found.palette) throw new ImageError('damaged image data: PNG palette missing');
  const raw = await inflate(found.idat, ImageError);
  const { width, height, depth } = header;
  const bitsPerPixel = CHANNELS[header.colorType] * depth;
  const bpp = Math.max(1, bitsPerPixel >> 3);
  const rgb = new Uint8Array(width * height * 3);
  const put = toRgb(header, found.palette, ImageError);
  const passes = header.interlace ? ADAM7 : [[0, 0, 1, 1]];
  let at = 0;
  for (const [x0, y0, dx, dy] of passes) {
    const cols = Math.ceil((width - x0) / dx), rows = Math.ceil((height - y0) / dy);
    if (cols <= 0 || rows <= 0) continue;
    const rowBytes = Math.ceil((cols * bitsPerPixel) / 8);
    const { pixels, next } = unfilter(raw, at, rows, rowBytes, bpp, ImageError);
    at = next;
    for (let r = 0; r < rows; r++) {
      const y = y0 + r * dy;
      for (let c = 0; c < cols; c++) put(pixels, r * rowBytes, c, rgb, 3 * (y * width + x0 + c * dx));
    }
  }
  return { width, height, rgb };
}
