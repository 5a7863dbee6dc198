"""The torch eager baseline of ``ufd-bench`` (``--torch-model``): the official way to run."""

from __future__ import annotations

import time

import numpy as np

from ufd.runtime.bench.measure import percentiles


def run_torch(
    model: str,
    checkpoint: str,
    folder: str | None,
    batch: int,
    iterations: int,
    device: str = "cpu",
):
    """Torch eager: encoder latency, and end to end on a folder (the official way).

    fp32 on the CPU; fp16 on CUDA (``device="cuda"``), synchronised before timing.
    """
    import open_clip
    import torch
    from PIL import Image
    from torchvision import transforms

    from ufd.export.models import MODEL_CONFIG_DIR
    from ufd.runtime.bundle.manifest import CLIP_MEAN, CLIP_STD
    from ufd.runtime.io.inputs import expand_inputs

    open_clip.add_model_config(MODEL_CONFIG_DIR)
    start = time.perf_counter()
    weights = None if checkpoint in ("", "none") else checkpoint
    dtype = torch.float16 if device == "cuda" else torch.float32
    visual = open_clip.create_model(model, pretrained=weights).visual.eval().to(device, dtype)
    fc = torch.nn.Linear(visual.output_dim, 1).eval().to(device, dtype)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    startup = time.perf_counter() - start
    x = torch.randn(batch, 3, 224, 224, device=device, dtype=dtype)
    times = []
    with torch.no_grad():
        fc(visual(x))
        sync()
        for _ in range(iterations):
            t = time.perf_counter()
            fc(visual(x))
            sync()
            times.append(time.perf_counter() - t)
    result = {
        "startup_s": startup,
        **percentiles(times),
        "throughput_ips": batch / np.median(times),
    }
    if folder:
        tf = transforms.Compose(
            [
                transforms.CenterCrop(224),
                transforms.ToTensor(),
                transforms.Normalize(CLIP_MEAN, CLIP_STD),
            ]
        )
        paths = [i.path for i in expand_inputs([folder]) if i.error is None]
        scored = 0
        with torch.no_grad():
            start = time.perf_counter()
            for path in paths:
                try:
                    pixels = tf(Image.open(path).convert("RGB")).unsqueeze(0)
                except OSError:
                    continue  # the official pipeline would crash here; skip the file
                float(fc(visual(pixels.to(device, dtype))))  # the score reaches the host
                scored += 1
            result["e2e_per_image_ms"] = (time.perf_counter() - start) / max(scored, 1) * 1e3
    return result
