"""``ufd-serve --protocol v2``: the Open Inference Protocol through KServe's own server,
spoken to by NVIDIA's ``tritonclient`` (HTTP with binary tensors, and gRPC) and by plain
JSON; every record equals ``ufd-detect``'s.

This process never imports kserve: its protobuf package ``inference`` is also
tritonclient's, and one process cannot hold both.
"""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from helpers import bad_input_corpus, random_image
from serving import Server, free_port, get, post
from tritonclient.utils import InferenceServerException
from typer.testing import CliRunner

from ufd.cli.detect import app as detect_app
from ufd.runtime import Detector

runner = CliRunner()
MODEL = "ufd"
CLIENTS = {"http": httpclient, "grpc": grpcclient}


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("v2-photos")
    sizes = [(300, 260), (120, 90), (640, 480), (224, 224), (1, 300)]
    return [random_image(folder / f"p{i}.png", s, seed=i) for i, s in enumerate(sizes)]


@pytest.fixture(scope="module")
def server(full_bundle: Path):
    grpc_port = free_port()
    running = Server(
        full_bundle, "--protocol", "v2", "--grpc-port", str(grpc_port),
        ready_path=f"/v2/models/{MODEL}/ready",
    )  # fmt: skip
    running.grpc_url = f"127.0.0.1:{grpc_port}"
    try:
        yield running
    finally:
        assert running.stop() == 0, running.stderr()  # SIGTERM drains, then exits 0


def client(server: Server, kind: str):
    if kind == "http":
        return httpclient.InferenceServerClient(server.url.removeprefix("http://"))
    return grpcclient.InferenceServerClient(server.grpc_url)


def offline(bundle: Path, files: list[Path], *args: str) -> list[dict]:
    """ufd-detect's JSONL records for ``files``."""
    result = runner.invoke(detect_app, [str(bundle), *map(str, files), "--format", "jsonl", *args])
    return [json.loads(line) for line in result.stdout.splitlines()]


def infer(server: Server, kind: str, files: list[Path], **parameters) -> list[dict]:
    """Records rebuilt from the v2 answer: one dict per image, field -> value."""
    module = CLIENTS[kind]
    image = module.InferInput("image", [len(files)], "BYTES")
    image.set_data_from_numpy(encoded(files, kind))
    result = client(server, kind).infer(MODEL, [image], parameters=parameters or None)
    response = result.get_response() if kind == "http" else result.get_response(as_json=True)
    names = [o["name"] for o in response["outputs"]]
    return rows({name: result.as_numpy(name) for name in names}, len(files))


def encoded(files: list[Path], kind: str) -> np.ndarray:
    """The BYTES elements: each file's bytes over gRPC, base64 over REST (binary tensors)."""
    if kind == "grpc":
        return np.array([f.read_bytes() for f in files], dtype=np.object_)
    return np.array([base64.b64encode(f.read_bytes()) for f in files], dtype=np.object_)


def rows(columns: dict[str, np.ndarray], count: int) -> list[dict]:
    out = []
    for i in range(count):
        row = {}
        for name, column in columns.items():
            value = column[i]
            if isinstance(value, bytes | str):
                text = value.decode() if isinstance(value, bytes) else value
                row[name] = None if text == "" else text
            elif isinstance(value, np.bool_):
                row[name] = bool(value)
            else:
                row[name] = None if math.isnan(float(value)) else float(value)
        out.append(row)
    return out


def same_record(got: dict, expected: dict) -> None:
    """The v2 row carries every field of the ufd-detect record but ``path``, equal."""
    assert set(got) == set(expected) - {"path"}, (sorted(got), sorted(expected))
    for name, value in got.items():
        want = expected[name]
        if name == "nn_source_share" and value is not None:
            value = json.loads(value)
        if isinstance(want, bool) or want is None or isinstance(want, str | dict):
            assert value == want, (name, value, want)
        else:
            assert value == float(want), (name, value, want)


@pytest.mark.parametrize("kind", ["http", "grpc"])
def test_tritonclient_gets_the_records_of_ufd_detect(
    server: Server, full_bundle: Path, photos: list[Path], kind: str
) -> None:
    live = client(server, kind)
    assert live.is_server_live() and live.is_server_ready() and live.is_model_ready(MODEL)
    expected = offline(full_bundle, photos, "--method", "all")
    got = infer(server, kind, photos, method="all")
    assert len(got) == len(expected)
    for row, record in zip(got, expected, strict=True):
        same_record(row, record)
    default = infer(server, kind, photos[:2])  # no parameters: --method linear
    assert set(default[0]) == {"logit", "prob", "label", "error"}


@pytest.mark.parametrize("kind", ["http", "grpc"])
def test_k_and_views_are_request_parameters(
    server: Server, full_bundle: Path, photos: list[Path], kind: str
) -> None:
    expected = offline(full_bundle, photos[:3], "--method", "nn,linear", "--k", "3", "--views", "2")
    got = infer(server, kind, photos[:3], method="nn,linear", k=3, views=2)
    for row, record in zip(got, expected, strict=True):
        same_record(row, record)


def test_metadata_names_inputs_and_every_output(server: Server, full_bundle: Path) -> None:
    meta = client(server, "http").get_model_metadata(MODEL)
    inputs = {i["name"]: i for i in meta["inputs"]}
    size = Detector.open(full_bundle, provider="cpu").bundle.manifest.model.image_size
    assert inputs["image"]["datatype"] == "BYTES"
    assert inputs["pixels"] == {"name": "pixels", "datatype": "FP32", "shape": [-1, 3, size, size]}
    outputs = {o["name"]: o["datatype"] for o in meta["outputs"]}
    assert outputs["logit"] == "FP64" and outputs["label"] == "BYTES"
    assert outputs["nn_source_share"] == "BYTES" and outputs["error"] == "BYTES"
    assert "path" not in outputs and outputs["views_agree"] == "BOOL"
    grpc_meta = client(server, "grpc").get_model_metadata(MODEL, as_json=True)
    assert {o["name"] for o in grpc_meta["outputs"]} == set(outputs)


def test_a_bad_image_is_its_error_element_never_a_failed_request(
    server: Server, full_bundle: Path, tmp_path: Path
) -> None:
    root, expect = bad_input_corpus(tmp_path)
    files = sorted(p for p in root.rglob("*") if p.is_file() and "loop" not in p.parts)
    files = [f for f in files if f.stat().st_size < 16 << 20]  # the request cap (64 MB) holds
    expected = offline(full_bundle, files)
    got = infer(server, "grpc", files)
    for row, record in zip(got, expected, strict=True):
        same_record(row, record)
    assert sum(r["error"] is not None for r in got) == sum(
        expect[f.name] is not None for f in files if f.name in expect
    )


def test_plain_json_with_base64_and_pixels(
    server: Server, full_bundle: Path, photos: list[Path]
) -> None:
    """A client without tritonclient: JSON in, JSON out (curl's way)."""
    url = f"{server.url}/v2/models/{MODEL}/infer"
    data = [base64.b64encode(p.read_bytes()).decode() for p in photos[:2]]
    request = {
        "inputs": [
            {
                "name": "image",
                "datatype": "BYTES",
                "shape": [2],
                "data": data,
            }
        ]
    }
    status, body, _ = post(url, json.dumps(request).encode(), "application/json")
    assert status == 200, body
    columns = {o["name"]: np.array(o["data"], dtype=np.object_) for o in body["outputs"]}
    for row, record in zip(rows(columns, 2), offline(full_bundle, photos[:2]), strict=True):
        same_record(row, record)

    detector = Detector.open(full_bundle, provider="cpu")
    pixels = np.stack([detector.prepare(p) for p in photos[:2]]).astype(np.float32)
    tensor = httpclient.InferInput("pixels", list(pixels.shape), "FP32")
    tensor.set_data_from_numpy(pixels)
    result = client(server, "http").infer(MODEL, [tensor])
    assert result.as_numpy("logit").tolist() == [
        r["logit"] for r in offline(full_bundle, photos[:2])
    ]


@pytest.mark.parametrize(
    ("request_body", "message"),
    [
        ({"inputs": []}, "send one input"),
        (
            {"inputs": [{"name": "picture", "datatype": "BYTES", "shape": [1], "data": ["x"]}]},
            "send one input",
        ),
        (
            {"inputs": [{"name": "image", "datatype": "FP32", "shape": [1], "data": [1.0]}]},
            "is BYTES",
        ),
        (
            {
                "inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": ["@@"]}],
                "parameters": {"method": "magic"},
            },
            "unknown method 'magic'",
        ),
        (
            {
                "inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": ["@@"]}],
                "parameters": {"colour": "blue"},
            },
            "unknown request parameters",
        ),
        (
            {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": ["@@"]}]},
            "not base64",
        ),
        (
            {
                "inputs": [
                    {"name": "pixels", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}
                ]
            },
            "must have shape",
        ),
    ],
)
def test_malformed_requests_get_a_400_that_says_why(
    server: Server, request_body: dict, message: str
) -> None:
    url = f"{server.url}/v2/models/{MODEL}/infer"
    status, body, _ = post(url, json.dumps(request_body).encode(), "application/json")
    assert status == 400 and message in body["error"], body
    assert get(server.url + "/v2/health/ready")[0] == 200


def test_raw_bytes_over_rest_get_a_short_400(server: Server, photos: list[Path]) -> None:
    image = httpclient.InferInput("image", [1], "BYTES")
    image.set_data_from_numpy(np.array([photos[0].read_bytes()], dtype=np.object_))
    with pytest.raises(InferenceServerException, match="base64") as raised:
        client(server, "http").infer(MODEL, [image])
    assert "400" in str(raised.value) and len(str(raised.value)) < 200


def test_grpc_says_invalid_argument(server: Server) -> None:
    image = grpcclient.InferInput("image", [1], "BYTES")
    image.set_data_from_numpy(np.array([b"x"], dtype=np.object_))
    with pytest.raises(InferenceServerException, match="unknown method"):
        client(server, "grpc").infer(MODEL, [image], parameters={"method": "magic"})


def test_api_key_request_bound_and_provenance(
    full_bundle: Path, tmp_path: Path, photos: list[Path]
) -> None:
    from PIL import Image, PngImagePlugin

    said = PngImagePlugin.PngInfo()
    said.add_text("parameters", "a cat, Steps: 20, Sampler: Euler a, Model: sd_xl_base_1.0")
    generated = tmp_path / "generated.png"
    Image.open(photos[1]).save(generated, pnginfo=said)
    key = tmp_path / "key"
    key.write_text("s3cret\n")
    grpc_port = free_port()
    args = ["--protocol", "v2", "--grpc-port", str(grpc_port), "--max-request-mb", "0.05"]
    args += ["--provenance"]
    running = Server(full_bundle, *args, "--api-key-file", str(key), ready_path="/v2/health/ready")
    try:
        http = httpclient.InferenceServerClient(running.url.removeprefix("http://"))
        image = httpclient.InferInput("image", [1], "BYTES")
        image.set_data_from_numpy(encoded([generated], "http"))
        with pytest.raises(InferenceServerException, match="Bearer"):
            http.infer(MODEL, [image])
        bearer = {"Authorization": "Bearer s3cret"}
        result = http.infer(MODEL, [image], headers=bearer)
        (record,) = offline(full_bundle, [generated], "--provenance")
        assert record["provenance"]["says"] == "generated"
        assert result.as_numpy("logit").tolist() == [record["logit"]]
        assert json.loads(result.as_numpy("provenance")[0]) == record["provenance"]
        big = httpclient.InferInput("image", [1], "BYTES")
        big.set_data_from_numpy(np.array([b"\0" * 100_000], dtype=np.object_))
        with pytest.raises(InferenceServerException, match="larger than"):
            http.infer(MODEL, [big], headers=bearer)
        rpc = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")
        assert rpc.is_server_live()  # health needs no key
        g = grpcclient.InferInput("image", [1], "BYTES")
        g.set_data_from_numpy(np.array([photos[1].read_bytes()], dtype=np.object_))
        with pytest.raises(InferenceServerException, match="Bearer"):
            rpc.infer(MODEL, [g])
        assert rpc.infer(MODEL, [g], headers={"authorization": "Bearer s3cret"}).as_numpy(
            "logit"
        ).shape == (1,)
    finally:
        assert running.stop() == 0, running.stderr()
