"""``ufd-bundle``: check, describe, slim and sign a bundle (runtime only)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ufd.cli.common import (
    EXIT_OK,
    EXIT_SOME_FAILED,
    EXIT_USAGE,
    handle_errors,
    run,
    setup_logging,
    trust,
)
from ufd.cli.options import BundleDir, MaxPixels, Provider, TrustKeys, Verbose
from ufd.runtime.io.policy import DEFAULT_MAX_PIXELS

app = typer.Typer(
    add_completion=False,
    rich_markup_mode=None,
    no_args_is_help=True,
    help="Check a copied bundle (verify), see what it holds (info), drop graphs (slim), "
    "sign it (keygen, sign).",
)


@app.command(
    help="Check every file's size and sha256, the manifest, and that every graph loads and "
    "every bank opens. Exit 0 when whole; 2, naming each bad file, when not. With --parity, "
    "also measure every encoder graph on this host against the bundle's fp32 reference and "
    "its tolerance, one line per precision, and say which precision --precision auto takes "
    "here: exit 0 when that one keeps the tolerance, 1 when no graph does."
)
@handle_errors
def verify(
    bundle: BundleDir,
    parity: Annotated[
        bool, typer.Option("--parity", help="Measure every graph on this host (see above).")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="With --parity: print one JSON object.")
    ] = False,
    provider: Provider = "auto",
    trust_key: TrustKeys = None,
    verbose: Verbose = 0,
) -> None:
    """Verify (see the command help)."""
    setup_logging(verbose)
    trust(trust_key)
    from ufd.runtime.bundle_ops.checks import signature_state
    from ufd.runtime.bundle_ops.checks import verify as check

    problems = check(bundle)
    for problem in problems:
        typer.echo(f"BAD {problem.file}: {problem.reason}", err=True)
    if problems:
        typer.echo(f"{bundle}: {len(problems)} problem(s)", err=True)
        raise typer.Exit(EXIT_USAGE)
    if not parity:
        typer.echo(f"{bundle}: every file matches its sha256; every graph and bank loads")
        typer.echo(f"{bundle}: {signature_state(bundle)}")
        return
    from ufd.runtime.bundle_ops.parity_check import check_parity

    verdict = check_parity(bundle, provider)
    if as_json:
        typer.echo(json.dumps(verdict.to_dict(), indent=2))
    else:
        _print_parity(bundle, verdict)
    raise typer.Exit(EXIT_OK if verdict.ok else EXIT_SOME_FAILED)


def _print_parity(bundle: Path, verdict) -> None:
    from ufd.runtime.parity import int8_class

    if verdict.note:
        typer.echo(f"note: {verdict.note}")
    for precision, found in verdict.graphs.items():
        state = "ok" if found.ok else "FAILS"
        typer.echo(f"{state:<6} {precision:<14} {found.describe()}")

    where = f"{verdict.provider}, int8: {int8_class()}"
    if verdict.auto is None:
        typer.echo(f"{bundle}: no graph keeps the tolerance on this host ({where})")
    else:
        typer.echo(f"{bundle}: --precision auto takes {verdict.auto} here ({where})")


@app.command(help="What the bundle holds: model, precisions, methods, sizes, parity figures.")
@handle_errors
def info(
    bundle: BundleDir,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    trust_key: TrustKeys = None,
) -> None:
    """Describe (see the command help)."""
    setup_logging(0)
    trust(trust_key)
    from ufd.runtime.bundle_ops.checks import describe

    about = describe(bundle)
    if as_json:
        typer.echo(json.dumps(about, indent=2))
        return
    model = about["model"]
    typer.echo(
        f"{bundle}: {model.get('detector', 'univfd')} on {model['name']} "
        f"({model['pretrained']}), {model['feature_dim']}-d, "
        f"schema {about['schema_version_on_disk']}, {about['total_mb']:.1f} MB"
    )
    for precision, enc in about["encoders"].items():
        parity = about["parity"].get(precision, {})
        figure = parity.get("max_abs_logit_error")
        extra = f", max |dlogit| vs torch {figure:.2e}" if figure is not None else ""
        typer.echo(f"  encoder {precision}: {enc['mb']:.1f} MB{extra}")
    for name, method in about["methods"].items():
        threshold = method["threshold"]
        calibrated = " (calibrated)" if method["calibration"] else ""
        shown = "default" if threshold is None else f"{threshold:.6g}"
        typer.echo(f"  method {name}: threshold {shown}{calibrated}, {method['mb']:.1f} MB")
    for note in about["notes"]:
        typer.echo(f"  note: {note}")
    signed = about["signed_by"] or ("not checked (no --trust-key)" if about["signed"] else None)
    typer.echo(f"  signature: {signed or 'none'}")


@app.command(
    help="Drop encoder graphs a device does not need, in place: the manifest is switched "
    "atomically, then the files are removed. Refuses to drop the last encoder. Then each "
    "kept graph is measured on this host (as verify --parity) and slim says whether it keeps "
    "the bundle's tolerance here. Keep int8-portable for x86 CPUs with AVX2 but no "
    "AVX-512 VNNI (most laptops, Zen 2/3): full-range int8 sums saturate there."
)
@handle_errors
def slim(
    bundle: BundleDir,
    keep: Annotated[
        str,
        typer.Option(
            help="Precisions to keep, comma-separated. The default keeps the fast CPU graphs "
            "of every x86 and Arm CPU."
        ),
    ] = "int8,int8-portable",
) -> None:
    """Slim (see the command help)."""
    setup_logging(0)
    from ufd.runtime.bundle_ops.checks import slim as drop
    from ufd.runtime.bundle_ops.parity_check import check_parity

    manifest, removed = drop(bundle, [p.strip() for p in keep.split(",") if p.strip()])
    typer.echo(
        f"removed {', '.join(removed) or 'nothing'}; {bundle} keeps "
        f"{', '.join(manifest.precisions)}"
    )
    verdict = check_parity(bundle)
    _print_parity(bundle, verdict)
    if verdict.auto is None and verdict.graphs:
        from ufd.runtime.encoder_choice import cure

        typer.echo(f"warning: no graph this bundle keeps works here. {cure(manifest.precisions)}")
    if "int8-portable" not in manifest.precisions:
        typer.echo(
            "note: without int8-portable, x86 CPUs with AVX2 but no VNNI (int8 sums saturate "
            "there) run a slower graph, or none that keeps the tolerance"
        )


@app.command(
    help="Make a key pair to sign bundles with: PREFIX.pem (private, mode 0600; keep it "
    "secret) and PREFIX.pub.pem (public: give it to devices, --trust-key)."
)
@handle_errors
def keygen(prefix: Annotated[Path, typer.Argument(help="Where to write, e.g. keys/publisher.")]):
    """Keygen (see the command help)."""
    setup_logging(0)
    from ufd.runtime.bundle_ops.checks import make_keys

    private, public = make_keys(prefix)
    typer.echo(f"wrote {private} (private: keep it secret) and {public} (public)")


@app.command(
    help="Sign a bundle with OpenSSF model signing (an elliptic-curve private key; with "
    "--certificate, an X.509 certificate too): signature.sig beside the manifest, which "
    "pins every file. Devices then use it with --trust-key PUB.pem (or UFD_TRUSTED_KEYS) "
    "and refuse it if anything changes. Changing the bundle later (ufd-index, "
    "ufd-calibrate, slim...) needs a new signature."
)
@handle_errors
def sign(
    bundle: BundleDir,
    key: Annotated[Path, typer.Option(help="Private key (PEM), e.g. from ufd-bundle keygen.")],
    certificate: Annotated[
        Path | None, typer.Option(help="Signing certificate (PEM) to sign with the key.")
    ] = None,
    chain: Annotated[
        list[Path] | None, typer.Option(help="Certificate chain (PEM), repeatable.")
    ] = None,
) -> None:
    """Sign (see the command help)."""
    setup_logging(0)
    from ufd.runtime.bundle.signing import sign as write_signature
    from ufd.runtime.methods import open_bundle

    open_bundle(bundle)  # a bundle, whole enough to read
    path = write_signature(bundle, key, certificate, chain or [])
    typer.echo(f"signed {bundle}: {path.name} (covers manifest.json, which pins every file)")


@app.command(
    help="Write BUNDLE as a static web page that scores images in the browser: images "
    "never leave the device. OUT gets index.html, the page's scripts, the graphs a browser "
    "runs (each checked by sha256 on load), the parity probes and onnxruntime-web (from the "
    "npm registry at build time, pinned and checked; its licence and sha256 in "
    "ort/SOURCE.json). On first load the page measures each graph on the probes and takes "
    "the first that keeps the bundle's tolerance (int8, then fp32). Any static host works; "
    "WebAssembly threads need the headers Cross-Origin-Opener-Policy: same-origin and "
    "Cross-Origin-Embedder-Policy: require-corp, which --serve sends."
)
@handle_errors
def web(
    bundle: BundleDir,
    out: Annotated[
        Path, typer.Argument(help="Folder for the site (new, empty, or a page built before).")
    ],
    precision: Annotated[
        str,
        typer.Option(
            help="Graphs the page may run, comma-separated, tried fastest first: int8, "
            "int8-portable, fp32 (and fp16, on WebGPU only, with --webgpu). Fewer graphs, "
            "lighter page."
        ),
    ] = "int8,fp32",
    ort_tarball: Annotated[
        Path | None,
        typer.Option(
            help="onnxruntime-web's npm tarball (npm pack onnxruntime-web@VERSION), for "
            "machines without npm. Default: npm pack, cached in ufd's cache folder."
        ),
    ] = None,
    max_pixels: MaxPixels = DEFAULT_MAX_PIXELS,
    webgpu: Annotated[
        bool,
        typer.Option(
            "--webgpu",
            help="Also ship onnxruntime-web's WebGPU build (about 29 MB more): where the "
            "browser has a WebGPU adapter, the fp16/fp32 graphs are checked and run on the GPU "
            "first; int8 stays on WebAssembly.",
        ),
    ] = False,
    serve: Annotated[
        bool,
        typer.Option(
            "--serve", help="Then serve OUT on 127.0.0.1 with those headers until Ctrl-C."
        ),
    ] = False,
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port for --serve.")] = 8000,
    trust_key: TrustKeys = None,
    verbose: Verbose = 0,
) -> None:
    """Web (see the command help)."""
    setup_logging(verbose)
    trust(trust_key)
    from ufd.runtime.web.site import WebOptions, build_site, page_weight

    wanted = tuple(p.strip() for p in precision.split(",") if p.strip())
    options = WebOptions(bundle, out, wanted, ort_tarball, max_pixels, webgpu)
    site = build_site(options)
    graphs = ", ".join(g["precision"] for g in site["graphs"])
    first, total = page_weight(out, site)
    typer.echo(
        f"wrote {out}: {site['detector']} page with {graphs}; onnxruntime-web "
        f"{site['ort']['version']} (MIT); a visit downloads {first / 1e6:.1f} MB "
        f"({total / 1e6:.1f} MB if it needs every graph)"
    )
    for note in site["notes"]:
        typer.echo(f"note: {note}")
    if site["methods_not_in_browser"]:
        others = ", ".join(site["methods_not_in_browser"])
        typer.echo(f"note: the page scores with linear only; {others} need ufd-detect")
    if serve:
        from ufd.runtime.web.static_server import make_server

        server = make_server(out, "127.0.0.1", port)
        typer.echo(f"serving http://127.0.0.1:{server.server_address[1]}/ (Ctrl-C stops)")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            typer.echo("stopped")
        finally:
            server.server_close()


def main() -> None:
    """Console-script entry point."""
    run(app)


if __name__ == "__main__":
    main()
