// Crops as torchvision and Pillow make them (shared by preprocess.js and units.js).

/** Python's round() (half to even) of (size - crop) / 2: torchvision's crop offset. */
export function boxOffset(size, crop) {
  const v = (size - crop) / 2, floor = Math.floor(v);
  if (v - floor !== 0.5) return Math.round(v);
  return floor % 2 === 0 ? floor : floor + 1;
}

/** The (w x h) window at (left, top) of an image; outside it is zeros (Pillow's crop). */
export function crop(image, left, top, w, h) {
  const out = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) {
    const sy = top + y;
    if (sy < 0 || sy >= image.height) continue;
    const x0 = Math.max(0, -left), x1 = Math.min(w, image.width - left);
    if (x1 > x0) out.set(image.rgb.subarray((sy * image.width + left + x0) * 3, (sy * image.width + left + x1) * 3), (y * w + x0) * 3);
  }
  return { width: w, height: h, rgb: out };
}

/** torchvision's CenterCrop(size), zero padding a smaller side. */
export function centerCrop(image, size) {
  const at = (n) => (n < size ? -Math.floor((size - n) / 2) : boxOffset(n, size));
  return crop(image, at(image.width), at(image.height), size, size);
}
