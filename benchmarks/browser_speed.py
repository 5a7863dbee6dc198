"""The browser as a device: ms per image in headless Chromium vs native onnxruntime, same CPU.

Per model (random-init, architecture-sized; int8 graphs), on one 1024x768 JPEG:

* ``native``: ``Detector.score_images`` on the image (decode, preprocess, int8 encoder,
  head), onnxruntime's CPU provider with as many threads as the browser gets, median
  of ``--runs`` after a warm-up; ``native encoder``: the encoder alone;
* ``browser``: the ``ufd-bundle web`` page served on loopback with COOP/COEP (WASM SIMD
  + threads), the same image uploaded ``--runs`` + 1 times, median after the first;
  its encoder and decode+preprocess shares; the longest stall of the page's main
  thread while scoring (inference runs in onnxruntime-web's proxy worker); the
  parity it measured on first load
  and the graph it took; the load time (fetch, sha256, parity); the page weight.

Models: ViT-S/16-384 (Community Forensics), ViT-B/16, ViT-L/14 (UnivFD).

Also, where preprocessing should run: the page's JavaScript (Pillow's resampling
ported, exact) against an ONNX preprocessing graph in onnxruntime-web (uint8 NHWC in;
crop or resize, normalise, NCHW out), both timed in the page on the same image.

Usage:
    python benchmarks/browser_speed.py [--work /tmp/ufd-speed] [--runs 10]
        [--models commfor-384,ViT-B-16-quickgelu,ViT-L-14-quickgelu]
Writes benchmarks/results/browser-speed.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from ufd.runtime import Detector
from ufd.runtime.web.site import WebOptions, build_site, page_weight
from ufd.runtime.web.static_server import serve_in_background


def commfor_bundle(work: Path) -> Path:
    """Community Forensics' ViT-S/16 at 384 from random weights, in its release format."""
    import torch
    from official_detectors import OfficialViTClassifier

    from ufd.export.graph.build import ExportOptions, export_bundle

    bundle = work / "bundle"
    if (bundle / "manifest.json").exists():
        return bundle
    work.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = OfficialViTClassifier("vit_small_patch16_384", 384).eval()
    torch.save({"model": model.state_dict()}, work / "commfor_384.pth")
    export_bundle(
        ExportOptions(
            out=bundle,
            detector="commfor",
            pretrained=str(work / "commfor_384.pth"),
            precisions=("fp32", "int8"),
        )
    )
    return bundle


FULLRES = ("dda", "bfree", "aligned", "spai")
"""Today's detectors at their own sizes: bundles from benchmarks/fullres_models.py (--fullres)."""


def bundle_for(model: str, work: Path, fullres: Path | None = None) -> Path:
    if model in FULLRES:
        if fullres is None:
            raise SystemExit(f"{model}: give --fullres DIR (made by benchmarks/fullres_models.py)")
        return fullres / model
    if model == "commfor-384":
        return commfor_bundle(work / model)
    from speed import prepare

    return prepare(model, work / model, "fp32,int8", fresh=False)[1]


def native(bundle: Path, image: Path, runs: int, threads: int) -> dict:
    detector = Detector.open(bundle, precision="int8", provider="cpu", threads=threads)
    detector.score_images([image])  # warm up
    times, encoder = [], []
    prepared = detector.prepare(image)
    single = isinstance(prepared, np.ndarray)  # one crop (units: encoder timed in the record)
    for _ in range(runs):
        started = time.perf_counter()
        detector.score_images([image])
        times.append(1000 * (time.perf_counter() - started))
        if single:
            started = time.perf_counter()
            detector.features(prepared[None])
            encoder.append(1000 * (time.perf_counter() - started))
    record = detector.score_images([image])[0]
    return {
        "ms": statistics.median(times),
        "encoder_ms": statistics.median(encoder) if encoder else None,
        "logit": record.values["logit"],
    }


def browser_driver():
    os.environ["SE_OFFLINE"] = "true"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.set_script_timeout(600)
    return driver


def in_browser(site: Path, image: Path, runs: int, isolated: bool = True) -> dict:
    """The page in a browser of its own (an earlier page's threads must not share the CPU)."""
    driver = browser_driver()
    try:
        return _in_browser(driver, site, image, runs, isolated)
    finally:
        driver.quit()


def _in_browser(driver, site: Path, image: Path, runs: int, isolated: bool) -> dict:
    copies = []
    for i in range(runs + 1):
        copy = site.parent / "uploads" / f"{i:02d}-{image.name}"
        copy.parent.mkdir(exist_ok=True)
        copy.write_bytes(image.read_bytes())
        copies.append(copy)
    server, url = serve_in_background(site, isolated=isolated)
    try:
        started = time.perf_counter()
        driver.get(url)
        while driver.execute_script("return window.ufdState") == "loading":
            time.sleep(0.05)
        load_s = time.perf_counter() - started
        assert driver.execute_script("return window.ufdState") == "ready"
        from selenium.webdriver.common.by import By

        driver.execute_script(STALL_JS)
        driver.find_element(By.ID, "files").send_keys("\n".join(map(str, copies)))
        while driver.execute_script("return window.ufdRecords.length") < len(copies):
            time.sleep(0.05)
        stall = driver.execute_script("clearInterval(window.__monitor); return window.__stall")
        timings = driver.execute_script("return window.ufdTimings")[1:]
        records = driver.execute_script("return window.ufdRecords")
        parity = driver.execute_script("return window.ufdParity")
        preprocessing = driver.execute_async_script(PREPROCESS_JS, image.name)
        threads = driver.execute_script("return self.crossOriginIsolated")
    finally:
        server.shutdown()
        server.server_close()
    return {
        "ms": statistics.median(t["total"] for t in timings),
        "encoder_ms": statistics.median(t["encoder"] for t in timings),
        "decode_preprocess_ms": statistics.median(t["decode_preprocess"] for t in timings),
        "load_s": load_s,
        "parity": parity,
        "logit": records[-1]["logit"],
        "threads": threads,
        "longest_main_thread_stall_ms": stall,
        "preprocessing": preprocessing,
    }


STALL_JS = """
window.__stall = 0;
let last = performance.now();
window.__monitor = setInterval(() => {
  const now = performance.now();
  window.__stall = Math.max(window.__stall, now - last - 20);
  last = now;
}, 20);
"""
"""The page's main thread's longest stall while scoring: what a person would feel."""

PREPROCESS_JS = """
const [name, done] = arguments;
(async () => {
  const ort = await import('./ort/ort.wasm.min.mjs');
  const pre = await import('./ufd-web/preprocess.js');
  const dec = await import('./ufd-web/decode.js');
  const site = window.ufd.site, p = site.preprocess;
  const bytes = new Uint8Array(await (await fetch('uploads-bench/' + name)).arrayBuffer());
  const policy = {maxPixels: site.max_pixels, exifTranspose: false, reasons: site.reasons};
  const image = await dec.decodeImage(bytes, policy);
  const time = async (f, n = 7) => { const t = []; for (let i = 0; i < n; i++) {
    const t0 = performance.now(); await f(); t.push(performance.now() - t0); }
    t.sort((a, b) => a - b); return t[Math.floor(n / 2)]; };
  const js = await time(() => pre.normalise(pre.unitsOf(image, p).units, p.mean, p.std));
  const graph = new Uint8Array(await (await fetch('uploads-bench/preprocess.onnx')).arrayBuffer());
  const session = await ort.InferenceSession.create(graph);
  const shape = [1, image.height, image.width, 3];
  let out = null; // a fresh input each run: the proxy worker takes the buffer it is sent
  const onnx = await time(async () => {
    out = await session.run({image: new ort.Tensor('uint8', image.rgb.slice(), shape)}); });
  const want = pre.normalise(pre.unitsOf(image, p).units, p.mean, p.std);
  let worst = 0;
  const got = out.pixels.data;
  for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]));
  done({js_ms: js, onnx_ms: onnx, onnx_max_abs_error: worst, decode_ms: await time(() =>
    dec.decodeImage(bytes, policy))});
})().catch((e) => done({error: String(e)}));
"""


def preprocess_graph(config: dict, width: int, height: int) -> bytes:
    """The bundle's preprocessing as ONNX ops: uint8 [1, H, W, 3] in, NCHW float32 out."""
    import onnx
    from onnx import TensorProto, helper

    nodes, inits = [], []

    def const(name: str, values, dtype=np.float32) -> str:
        inits.append(onnx.numpy_helper.from_array(np.asarray(values, dtype), name))
        return name

    nodes.append(helper.make_node("Cast", ["image"], ["f"], to=TensorProto.FLOAT))
    nodes.append(helper.make_node("Transpose", ["f"], ["nchw"], perm=[0, 3, 1, 2]))
    current = "nchw"
    if config["mode"] == "resize_center_crop":
        short = min(width, height)
        new = (config["resize_size"], int(config["resize_size"] * max(width, height) / short))
        h, w = new if height <= width else new[::-1]
        sizes = const("sizes", [1, 3, h, w], np.int64)
        mode = {"bicubic": "cubic", "bilinear": "linear"}[config["resize_interpolation"]]
        nodes.append(
            helper.make_node(
                "Resize",
                [current, "", "", sizes],
                ["resized"],
                mode=mode,
                cubic_coeff_a=-0.5,
                antialias=1,
            )
        )
        nodes.append(helper.make_node("Round", ["resized"], ["rounded"]))
        nodes.append(
            helper.make_node(
                "Clip", ["rounded", const("lo", 0.0), const("hi", 255.0)], ["resized8"]
            )
        )
        current, width, height = "resized8", w, h
    size = config["crop_size"]
    top, left = round((height - size) / 2), round((width - size) / 2)
    starts, ends = (
        const("starts", [top, left], np.int64),
        const("ends", [top + size, left + size], np.int64),
    )
    nodes.append(
        helper.make_node(
            "Slice", [current, starts, ends, const("axes", [2, 3], np.int64)], ["crop"]
        )
    )
    nodes.append(helper.make_node("Div", ["crop", const("k255", 255.0)], ["unit"]))
    mean = const("mean", np.asarray(config["mean"]).reshape(1, 3, 1, 1))
    std = const("std", np.asarray(config["std"]).reshape(1, 3, 1, 1))
    nodes.append(helper.make_node("Sub", ["unit", mean], ["centred"]))
    nodes.append(helper.make_node("Div", ["centred", std], ["pixels"]))
    graph = helper.make_graph(
        nodes,
        "ufd-preprocess",
        [helper.make_tensor_value_info("image", TensorProto.UINT8, [1, None, None, 3])],
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, [1, 3, size, size])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    return model.SerializeToString()


def photo(path: Path) -> Path:
    from skimage import data

    Image.fromarray(data.astronaut()).resize((1024, 768)).save(path, quality=92)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="commfor-384,ViT-B-16-quickgelu,ViT-L-14-quickgelu")
    parser.add_argument("--work", type=Path, default=Path("/tmp/ufd-speed"))
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--fullres", type=Path, help="Folder of dda/bfree/aligned/spai bundles.")
    parser.add_argument("--name", default="browser-speed", help="Results file name.")
    parser.add_argument(
        "--one-thread",
        action="store_true",
        help="Also time the page served without COOP/COEP (one thread: hosts without headers).",
    )
    args = parser.parse_args()
    image = photo(args.work / "browser-1024x768.jpg")
    driver = browser_driver()
    version = driver.capabilities.get("browserVersion")
    driver.quit()
    threads = 2 if (os.cpu_count() or 1) >= 2 else 1  # what the page asks: the CPU's cores
    rows = {}
    for model in args.models.split(","):
        bundle = bundle_for(model, args.work, args.fullres)
        site_dir = args.work / "web" / model
        site = build_site(WebOptions(bundle=bundle, out=site_dir))
        extras = site_dir / "uploads-bench"
        extras.mkdir()
        (extras / image.name).write_bytes(image.read_bytes())
        (extras / "preprocess.onnx").write_bytes(preprocess_graph(site["preprocess"], 1024, 768))
        first, total = page_weight(site_dir, site)
        row = {"native": native(bundle, image, args.runs, threads)}
        row["browser"] = in_browser(site_dir, image, args.runs)
        if args.one_thread:
            single = in_browser(site_dir, image, args.runs, isolated=False)
            row["browser_one_thread"] = {k: single[k] for k in ("ms", "encoder_ms", "threads")}
        row["ratio"] = row["browser"]["ms"] / row["native"]["ms"]
        row["page_mb"] = first / 1e6
        row["page_all_graphs_mb"] = total / 1e6
        rows[model] = row
        print(model, json.dumps(row), flush=True)
    meta = {"chromium": version, "cpu_count": os.cpu_count(), "threads": threads, "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(meta, indent=2) + "\n")
    (args.out / f"{args.name}.md").write_text(markdown(meta))
    print(markdown(meta))


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def markdown(meta: dict) -> str:
    lines = [
        f"Chromium {meta['chromium']} headless, {meta['threads']} threads; ms per image "
        "(1024x768 JPEG, end to end), median after warm-up",
        "",
        "| model | native int8 | browser int8 | browser / native | encoder native / browser "
        "| parity in browser (took) | load s | page MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for model, r in meta["rows"].items():
        took = next(p for p in r["browser"]["parity"] if p["ok"])
        lines.append(
            f"| {model} | {r['native']['ms']:.0f} | {r['browser']['ms']:.0f} | {r['ratio']:.2f}x "
            f"| {_ms(r['native']['encoder_ms'])} / {r['browser']['encoder_ms']:.0f} "
            f"| {took['precision']}: cosine {took['min_feature_cosine']:.6f}, "
            f"|Δlogit| {took['max_abs_logit']:.4f} | {r['browser']['load_s']:.1f} "
            f"| {r['page_mb']:.0f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
