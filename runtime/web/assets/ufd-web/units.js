// Images that become several encoder inputs, or one of their own size (runtime/units.py).
import { boxOffset, crop } from './crop.js';
import { ImageError } from './decode.js';

/** `whole`: the image, centre-cropped to `max_input_pixels` when larger (and a note). */
export function whole(image, p) {
  const { width, height } = image, cap = p.max_input_pixels;
  if (cap === null || cap === undefined || width * height <= cap) return { units: [image], note: null };
  const scale = Math.sqrt(cap / (width * height));
  const w = Math.max(1, Math.trunc(width * scale)), h = Math.max(1, Math.trunc(height * scale));
  const n = (x) => x.toLocaleString('en-US');
  return {
    units: [crop(image, boxOffset(width, w), boxOffset(height, h), w, h)],
    note: `centre ${w}x${h} of ${width}x${height} (this detector's input cap: ${n(cap)} pixels)`,
  };
}

/** The image tiled around itself (np.tile) and cut to (w x h) from its origin. */
function tiled(image, w, h) {
  const out = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const s = ((y % image.height) * image.width + (x % image.width)) * 3;
      out[(y * w + x) * 3] = image.rgb[s]; out[(y * w + x) * 3 + 1] = image.rgb[s + 1]; out[(y * w + x) * 3 + 2] = image.rgb[s + 2];
    }
  }
  return { width: w, height: h, rgb: out };
}

/** `five_crops` (B-Free): centre, top-left, bottom-left, bottom-right, top-right on the grid. */
export function fiveGridCrops(image, p) {
  const g = p.grid, cells = Math.floor(p.crop_size / g);
  let rows = Math.floor(image.height / g), cols = Math.floor(image.width / g);
  if (rows === 0 || cols === 0) {
    throw new ImageError(`image is ${image.width}x${image.height}, smaller than one ${g}-pixel cell`);
  }
  let pixels = crop(image, 0, 0, cols * g, rows * g);
  if (rows < cells || cols < cells) {
    const reps = (n) => Math.max(Math.ceil(cells / n), 1);
    const big = tiled(pixels, cols * g * reps(cols), rows * g * reps(rows));
    pixels = crop(big, 0, 0, cells * g, cells * g);
    rows = cols = cells;
  }
  const top = Math.max(Math.floor((rows - cells) / 2), 0) * g, left = Math.max(Math.floor((cols - cells) / 2), 0) * g;
  const s = cells * g, bottom = rows * g, right = cols * g;
  const corners = [[top, left], [0, 0], [bottom - s, 0], [bottom - s, right - s], [0, right - s]];
  return { units: corners.map(([y, x]) => crop(pixels, x, y, s, s)), note: null };
}

/** numpy's reflect padding (reflect-101) of the image up to `size` on each short side, centred. */
function mirrorPad(image, size) {
  const padH = Math.max(size - image.height, 0), padW = Math.max(size - image.width, 0);
  if (padH === 0 && padW === 0) return image;
  const top = Math.floor(padH / 2), left = Math.floor(padW / 2);
  const h = image.height + padH, w = image.width + padW;
  const reflect = (i, n) => {
    if (n === 1) return 0;
    const period = 2 * (n - 1);
    i = ((i % period) + period) % period;
    return i < n ? i : period - i;
  };
  const out = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) {
    const sy = reflect(y - top, image.height);
    for (let x = 0; x < w; x++) {
      const s = (sy * image.width + reflect(x - left, image.width)) * 3, o = (y * w + x) * 3;
      out[o] = image.rgb[s]; out[o + 1] = image.rgb[s + 1]; out[o + 2] = image.rgb[s + 2];
    }
  }
  return { width: w, height: h, rgb: out };
}

/** `tiles` (SPAI): a tile every `tile_stride` pixels, or torchvision's five crops when too few. */
export function tiles(image, p) {
  const s = p.crop_size, d = p.tile_stride || p.crop_size, pixels = mirrorPad(image, s);
  const out = [];
  for (let y = 0; y + s <= pixels.height; y += d) {
    for (let x = 0; x + s <= pixels.width; x += d) out.push(crop(pixels, x, y, s, s));
  }
  if (out.length >= (p.min_tiles || 0)) return { units: out, note: null };
  const { width, height } = pixels, top = boxOffset(height, s), left = boxOffset(width, s);
  const corners = [[0, 0], [0, width - s], [height - s, 0], [height - s, width - s], [top, left]];
  return { units: corners.map(([y, x]) => crop(pixels, x, y, s, s)), note: null };
}
