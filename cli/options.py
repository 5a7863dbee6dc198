"""The options ufd's commands share, each declared once as a typer ``Annotated`` alias.

A command takes one by naming its alias as a parameter's type::

    def detect(bundle: BundleDir, precision: Precision = None, verbose: Verbose = 0): ...

Flags, help and bounds live here only; the default stays in the command (typer
reads it from the signature). ``ufd-detect``'s fast path (:mod:`ufd.cli.quick`)
reads the same declarations, so there is no second parser to keep in step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ufd.runtime.providers import PROVIDER_HELP
from ufd.runtime.transforms import REUPLOAD_NAMES

PRECISION_NAMES = "fp32, fp16, int8 or int8-portable"

BundleDir = Annotated[Path, typer.Argument(help="Bundle directory (made by ufd-export).")]
Verbose = Annotated[
    int,
    typer.Option(
        "--verbose", "-v", count=True, help="More logs: -v info and tracebacks, -vv debug."
    ),
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Only errors on stderr.")]
Precision = Annotated[
    str | None,
    typer.Option(
        help=f"Encoder graph: {PRECISION_NAMES}, or auto (the default): the fastest graph the "
        "bundle has for the provider that keeps the bundle's tolerance on this CPU (measured "
        "once per host, cached)."
    ),
]
FeaturePrecision = Annotated[
    str,
    typer.Option(
        "--precision",
        help=f"Encoder graph that computes the features ({PRECISION_NAMES}, or auto). fp32 "
        "by default: banks and heads are fitted on the reference features.",
    ),
]
Provider = Annotated[str, typer.Option(help=PROVIDER_HELP)]
Threads = Annotated[
    int | None, typer.Option(min=1, help="onnxruntime intra-op threads of every session.")
]
BatchSize = Annotated[
    int | None,
    typer.Option(
        min=1, help="Images per encoder call. Default: the provider's (8 on the CPU, 32 on a GPU)."
    ),
]
K = Annotated[
    int | None,
    typer.Option(
        "--k", min=1, help="Neighbours: nn vote (default 1), realonly (default: calibrated)."
    ),
]
Views = Annotated[
    int,
    typer.Option(
        min=0,
        help=f"Also score N re-upload views of each image, in this order: "
        f"{', '.join(REUPLOAD_NAMES)}. Each method adds the views' lowest and highest score "
        "and whether every view's label agrees (views_prob_min, views_prob_max, views_agree; "
        "traces_views_agree, ...); an image whose views disagree is labelled unsure (its "
        "score stays its own). 0: none.",
    ),
]
MaxPixels = Annotated[
    int,
    typer.Option(
        min=1,
        help="Refuse images with more decoded pixels than this (read from the header, before "
        "decoding).",
    ),
]
Progress = Annotated[
    bool | None,
    typer.Option(
        "--progress/--no-progress", help="Progress bar on stderr (default: when it is a terminal)."
    ),
]
TrustKeys = Annotated[
    list[Path] | None,
    typer.Option(
        "--trust-key",
        help="Use only bundles signed with this public key (ufd-bundle sign); repeatable. "
        "Also UFD_TRUSTED_KEYS (keys separated by ':') and UFD_TRUSTED_CERTS (certificate "
        "chains). An unsigned bundle, another signer or a change after signing: exit 2.",
    ),
]
RealImages = Annotated[
    list[Path] | None, typer.Option("--real", help="Folder of real images (repeatable).")
]
FakeImages = Annotated[
    list[str] | None,
    typer.Option(
        "--fake",
        help="Folder of fake images: DIR (source 'fake') or NAME=DIR to name the generator "
        "(repeatable).",
    ),
]
RealFeatures = Annotated[
    list[Path] | None,
    typer.Option(
        help="Precomputed real features: .npy (N, D), or a ufd-scan --features dataset "
        "(repeatable)."
    ),
]
FakeFeatures = Annotated[
    list[str] | None,
    typer.Option(help="Precomputed fake features: F.npy or NAME=F.npy (repeatable)."),
]


def methods_help(allow_all: bool = True) -> str:
    """``--method`` help, from the method registry.

    The methods (numpy, onnxruntime) are imported only when help is shown: typer
    builds every option's help at every start, and a one-image call through a
    service (``ufd-detect --server``) should not pay for modules it never uses.
    """
    import sys

    if "--help" not in sys.argv[1:]:
        return "a method, a comma-separated list, or all (see --help)."
    from ufd.runtime.registry import registered

    text = "; ".join(cls.summary for cls in registered().values())
    return text + (
        "; a comma-separated list, or all (every one the bundle has)." if allow_all else "."
    )


Method = Annotated[str, typer.Option(help=methods_help())]

Fps = Annotated[float, typer.Option(min=0.001, help="Videos: frames sampled per second of video.")]
MaxFrames = Annotated[
    int,
    typer.Option(
        min=1,
        help="Videos: at most this many frames, spread evenly over the whole video when "
        "--fps would give more.",
    ),
]
Keyframes = Annotated[
    bool,
    typer.Option(
        help="Videos: decode key frames only (fast); the first key frame at or after each "
        "sampling time."
    ),
]
VideoRule = Annotated[
    str,
    typer.Option(
        help="Videos: what decides a video's label: mean (the mean frame score against the "
        "threshold and unsure band), max (the highest frame score: catches short inserts), "
        "or share (more than half the frames fake)."
    ),
]
Frames = Annotated[
    bool,
    typer.Option(
        help="Videos: also one record per sampled frame (PATH#t=SECONDS), before the video's."
    ),
]
VideoTimeout = Annotated[
    float,
    typer.Option(
        min=1.0,
        help="Videos: stop decoding one video after this many seconds of wall time (the "
        "frames so far are kept).",
    ),
]
GifAsVideo = Annotated[
    bool,
    typer.Option(
        "--gif-as-video",
        help="Videos: score animated GIFs as videos (their frames over time) instead of "
        "their first frame.",
    ),
]
