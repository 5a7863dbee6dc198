// Step 1 of the flow in the browser: a file becomes RGB pixels, as ufd's Python decode does.
//
// Pillow's `Image.open(f).convert("RGB")` is the reference (runtime/io/decode.py):
// PNG and GIF are decoded here, in JavaScript, so that alpha is dropped without the
// canvas's premultiplication, 16-bit samples become `value >> 8` and palettes map as
// Pillow maps them; JPEG, WebP and BMP go through the browser's own decoder with colour
// management and EXIF rotation off. The pixel count is read from the header and
// checked against the cap before any pixel is decoded (a decompression bomb is refused
// by its size). Every failure is an ImageError with a short, stable reason.
import { decodeGif } from './gif.js';
import { decodePng } from './png.js';

export class ImageError extends Error {}

const ELSEWHERE = [
  ['TIFF', [0x49, 0x49, 0x2a, 0x00], 0], ['TIFF', [0x4d, 0x4d, 0x00, 0x2a], 0],
  ['HEIC/AVIF', [0x66, 0x74, 0x79, 0x70], 4], ['JPEG XL', [0xff, 0x0a], 0],
];

/** The name of an image format ufd-detect reads and this page does not, or null. */
function elsewhere(bytes) {
  const hit = ELSEWHERE.find(([, sig, at]) => sig.every((b, i) => bytes[at + i] === b));
  return hit ? hit[0] : null;
}

/** The container of `bytes` by its signature: png, gif, jpeg, webp, bmp, or null. */
export function sniff(bytes) {
  const starts = (sig, at = 0) => sig.every((b, i) => bytes[at + i] === b);
  if (starts([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])) return 'png';
  if (starts([0x47, 0x49, 0x46, 0x38])) return 'gif';
  if (starts([0xff, 0xd8, 0xff])) return 'jpeg';
  if (starts([0x52, 0x49, 0x46, 0x46]) && starts([0x57, 0x45, 0x42, 0x50], 8)) return 'webp';
  if (starts([0x42, 0x4d]) && bytes.length > 26) return 'bmp';
  return null;
}

const u16be = (b, i) => (b[i] << 8) | b[i + 1];
const u16le = (b, i) => b[i] | (b[i + 1] << 8);
const u24le = (b, i) => b[i] | (b[i + 1] << 8) | (b[i + 2] << 16);
const u32be = (b, i) => ((b[i] << 24) >>> 0) + ((b[i + 1] << 16) | (b[i + 2] << 8) | b[i + 3]);
const i32le = (b, i) => b[i] | (b[i + 1] << 8) | (b[i + 2] << 16) | (b[i + 3] << 24);
const u32le = (b, i) => i32le(b, i) >>> 0;

/** {width, height} from the header alone; an ImageError when it is not there. */
export function dimensions(bytes, kind) {
  const need = (n) => {
    if (bytes.length < n) throw new ImageError('damaged image data: truncated header');
  };
  if (kind === 'png') {
    need(24);
    return { width: u32be(bytes, 16), height: u32be(bytes, 20) };
  }
  if (kind === 'gif') {
    need(10);
    return { width: u16le(bytes, 6), height: u16le(bytes, 8) };
  }
  if (kind === 'bmp') {
    need(26);
    if (i32le(bytes, 14) === 12) return { width: u16le(bytes, 18), height: u16le(bytes, 20) };
    return { width: Math.abs(i32le(bytes, 18)), height: Math.abs(i32le(bytes, 22)) };
  }
  if (kind === 'webp') return webpSize(bytes, need);
  return jpegSize(bytes);
}

function webpSize(bytes, need) {
  need(30);
  const chunk = String.fromCharCode(...bytes.subarray(12, 16));
  if (chunk === 'VP8 ') return { width: u16le(bytes, 26) & 0x3fff, height: u16le(bytes, 28) & 0x3fff };
  if (chunk === 'VP8L') {
    const bits = u32le(bytes, 21);
    return { width: 1 + (bits & 0x3fff), height: 1 + ((bits >>> 14) & 0x3fff) };
  }
  if (chunk === 'VP8X') return { width: 1 + u24le(bytes, 24), height: 1 + u24le(bytes, 27) };
  throw new ImageError('damaged image data: unknown WebP chunk');
}

function jpegSize(bytes) {
  let i = 2;
  while (i + 9 < bytes.length) {
    if (bytes[i] !== 0xff) throw new ImageError('damaged image data: bad JPEG marker');
    const marker = bytes[i + 1];
    if (marker === 0xff) { i += 1; continue; }
    if (marker === 0xd8 || marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) { i += 2; continue; }
    const sof = marker >= 0xc0 && marker <= 0xcf && ![0xc4, 0xc8, 0xcc].includes(marker);
    if (sof) return { width: u16be(bytes, i + 7), height: u16be(bytes, i + 5) };
    i += 2 + u16be(bytes, i + 2);
  }
  throw new ImageError('damaged image data: no JPEG frame header');
}

/** A copy of a JPEG whose EXIF orientation says "as stored" (browsers apply it; Pillow does not). */
export function withoutJpegOrientation(bytes) {
  let i = 2;
  while (i + 4 < bytes.length && bytes[i] === 0xff) {
    const marker = bytes[i + 1], length = u16be(bytes, i + 2);
    const exif = marker === 0xe1 && String.fromCharCode(...bytes.subarray(i + 4, i + 8)) === 'Exif';
    if (exif) return patchOrientation(bytes, i + 10);
    if (marker === 0xda) break;
    i += 2 + length;
  }
  return bytes;
}

function patchOrientation(bytes, tiff) {
  const little = bytes[tiff] === 0x49;
  const u16 = (i) => (little ? u16le(bytes, i) : u16be(bytes, i));
  const u32 = (i) => (little ? u32le(bytes, i) : u32be(bytes, i));
  if (tiff + 8 > bytes.length) return bytes;
  const ifd = tiff + u32(tiff + 4);
  if (ifd + 2 > bytes.length) return bytes;
  for (let n = 0, count = u16(ifd); n < count; n++) {
    const entry = ifd + 2 + 12 * n;
    if (entry + 12 > bytes.length) break;
    if (u16(entry) === 0x0112) {
      const copy = bytes.slice();
      copy[entry + 8] = little ? 1 : 0;
      copy[entry + 9] = little ? 0 : 1;
      return copy;
    }
  }
  return bytes;
}

/** A browser shows what arrived of a cut file; Pillow refuses it. So refuse what is cut. */
function checkWhole(bytes, kind) {
  let cut = false;
  if (kind === 'bmp' && i32le(bytes, 14) >= 40 && [0, 3].includes(u32le(bytes, 30))) {
    const { width, height } = dimensions(bytes, kind), bits = u16le(bytes, 28);
    cut = bytes.length < u32le(bytes, 10) + Math.floor((bits * width + 31) / 32) * 4 * height;
  }
  if (kind === 'webp') cut = bytes.length < u32le(bytes, 4) + 8;
  if (kind === 'jpeg') {
    let end = bytes.length - 1;
    while (end > 1 && bytes[end] !== 0xd9) end--;
    cut = end <= 1 || bytes[end - 1] !== 0xff;
  }
  if (cut) throw new ImageError(`damaged image data: truncated ${kind.toUpperCase()} file`);
}

async function decodeNative(bytes, kind, exifTranspose) {
  checkWhole(bytes, kind);
  const data = kind === 'jpeg' && !exifTranspose ? withoutJpegOrientation(bytes) : bytes;
  let bitmap;
  try {
    bitmap = await createImageBitmap(new Blob([data]), {
      colorSpaceConversion: 'none',
      premultiplyAlpha: 'none',
      imageOrientation: 'from-image',
    });
  } catch (e) {
    throw new ImageError(`damaged image data: the browser cannot decode this ${kind.toUpperCase()}`);
  }
  const { width, height } = bitmap;
  const canvas = new OffscreenCanvas(width, height);
  const context = canvas.getContext('2d', { willReadFrequently: true, colorSpace: 'srgb' });
  context.drawImage(bitmap, 0, 0);
  bitmap.close();
  const rgba = context.getImageData(0, 0, width, height).data;
  const rgb = new Uint8Array(width * height * 3);
  for (let p = 0, q = 0; p < rgba.length; p += 4, q += 3) {
    rgb[q] = rgba[p]; rgb[q + 1] = rgba[p + 1]; rgb[q + 2] = rgba[p + 2];
  }
  return { width, height, rgb };
}

/**
 * Decode `bytes` to {width, height, rgb} (RGB, uint8, row by row).
 * @param {Uint8Array} bytes the file
 * @param {{maxPixels: number, exifTranspose: boolean, reasons: object}} policy the page's
 *   decode policy; `reasons` holds ufd's stable words (runtime/io/policy.py)
 */
export async function decodeImage(bytes, policy) {
  if (bytes.length === 0) throw new ImageError(policy.reasons.empty);
  const kind = sniff(bytes);
  if (kind === null) {
    const other = elsewhere(bytes);
    if (other) throw new ImageError(`${other} is not read in the browser: score this file with ufd-detect`);
    throw new ImageError(policy.reasons.not_an_image);
  }
  const { width, height } = dimensions(bytes, kind);
  if (width * height > policy.maxPixels) {
    const n = (x) => x.toLocaleString('en-US');
    throw new ImageError(
      `image is ${width}x${height} = ${n(width * height)} pixels, over the cap of ${n(policy.maxPixels)} ` +
        '(raise it with ufd-bundle web --max-pixels)',
    );
  }
  if (width === 0 || height === 0) throw new ImageError('damaged image data: zero-sized image');
  if (kind === 'png') return decodePng(bytes, ImageError);
  if (kind === 'gif') return decodeGif(bytes, ImageError);
  return decodeNative(bytes, kind, policy.exifTranspose);
}
