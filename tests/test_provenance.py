"""What a file says about its own origin: crafted files of each kind, hostile metadata."""

from __future__ import annotations

import datetime
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin
from serving import multipart, post, serving
from typer.testing import CliRunner

from ufd.cli.detect import app as detect_app
from ufd.runtime import Detector
from ufd.runtime.errors import ImageError
from ufd.runtime.provenance import read_provenance
from ufd.runtime.provenance.metadata import MAX_XMP_BYTES

runner = CliRunner()
IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"
BILLION_LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
    b"<x:xmpmeta>&b;</x:xmpmeta>"
)
BILLION_LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
    b"<x:xmpmeta>&b;</x:xmpmeta>"
)


def xmp(source_type: str = "trainedAlgorithmicMedia", tool: str | None = None) -> bytes:
    """An XMP packet with an IPTC DigitalSourceType (attribute form) and a CreatorTool."""
    creator = f' xmp:CreatorTool="{tool}"' if tool else ""
    return (
        '<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
        '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
        'rdf:about="" xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/" '
        f'xmlns:xmp="http://ns.adobe.com/xap/1.0/" Iptc4xmpExt:DigitalSourceType="{IPTC}'
        f'{source_type}"{creator}/></rdf:RDF></x:xmpmeta><?xpacket end="w"?>'
    ).encode()


def picture(size: tuple[int, int] = (96, 80), seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def encoded(fmt: str, image: Image.Image | None = None, **options) -> bytes:
    buffer = io.BytesIO()
    (image or picture()).save(buffer, fmt, **options)
    return buffer.getvalue()


def png_with(**texts: str) -> bytes:
    info = PngImagePlugin.PngInfo()
    for key, value in texts.items():
        info.add_itxt(key, value) if key.startswith("XML:") else info.add_text(key, value)
    return encoded("PNG", pnginfo=info)


def xmp_file(fmt: str, packet: bytes) -> bytes:
    """``packet`` in the place each format keeps XMP."""
    if fmt == "PNG":
        return png_with(**{"XML:com.adobe.xmp": packet.decode("utf-8", "replace")})
    if fmt == "TIFF":
        return encoded("TIFF", tiffinfo={700: packet})
    return encoded(fmt, xmp=packet)


# --- each kind of statement ------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "TIFF"])
@pytest.mark.parametrize(
    "source_type", ["trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia"]
)
def test_iptc_digital_source_type_in_every_format(fmt: str, source_type: str) -> None:
    found = read_provenance(xmp_file(fmt, xmp(source_type)))
    assert found["xmp"]["digital_source_type"] == source_type
    assert found["says"] == "generated" and "errors" not in found


def test_element_form_and_capture_types() -> None:
    packet = (
        xmp()
        .replace(f'Iptc4xmpExt:DigitalSourceType="{IPTC}trainedAlgorithmicMedia"'.encode(), b"")
        .replace(
            b"/></rdf:RDF>",
            f'><Iptc4xmpExt:DigitalSourceType rdf:resource="{IPTC}digitalCapture"/>'
            "</rdf:Description></rdf:RDF>".encode(),
        )
    )
    found = read_provenance(xmp_file("JPEG", packet))
    assert found["xmp"]["digital_source_type"] == "digitalCapture" and found["says"] == "captured"


def test_automatic1111_parameters() -> None:
    text = (
        "a cat in a hat\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Model: sd_xl_base_1.0"
    )
    found = read_provenance(png_with(parameters=text))
    assert found["generator"] == {
        "source": "png:parameters",
        "name": "AUTOMATIC1111-compatible",
        "detail": "sd_xl_base_1.0",
        "sources": ["png:parameters"],
    }
    assert found["says"] == "generated"


def test_comfyui_prompt_and_workflow() -> None:
    found = read_provenance(png_with(prompt=json.dumps({"3": {"class_type": "KSampler"}})))
    assert found["generator"]["name"] == "ComfyUI" and "errors" not in found
    broken = read_provenance(png_with(workflow="{not json"))
    assert broken["generator"]["name"] == "ComfyUI" and broken["errors"] == [
        "png:workflow: not valid JSON"
    ]  # still reported: the key alone says ComfyUI wrote it


@pytest.mark.parametrize(("fmt", "software"), [("JPEG", "Midjourney v6"), ("TIFF", "Firefly 2")])
def test_exif_software_of_known_generators(fmt: str, software: str) -> None:
    exif = Image.Exif()
    exif[0x0131] = software
    found = read_provenance(encoded(fmt, exif=exif))
    assert found["generator"] == {
        "source": "exif:Software",
        "name": software,
        "sources": ["exif:Software"],
    }


def test_files_that_say_nothing_give_null() -> None:
    exif = Image.Exif()
    exif[0x0131] = "GIMP 2.10"  # an editor, not a generator
    for data in (encoded("JPEG"), encoded("PNG"), encoded("JPEG", exif=exif)):
        assert read_provenance(data) is None


# --- hostile and broken metadata -------------------------------------------------------


def test_huge_xmp_is_refused_not_read() -> None:
    packet = xmp()[:-20] + b" " * (MAX_XMP_BYTES + 10) + xmp()[-20:]
    found = read_provenance(xmp_file("PNG", packet))
    assert "xmp" not in found and "over the" in found["errors"][0]


def test_truncated_xmp_keeps_what_it_has() -> None:
    packet = xmp()[: xmp().index(b"</rdf:RDF>")]
    found = read_provenance(xmp_file("JPEG", packet))
    assert found["xmp"]["digital_source_type"] == "trainedAlgorithmicMedia"
    assert "truncated" in found["errors"][0]


@pytest.mark.parametrize(
    ("packet", "reason"),
    [
        (b"\x00\xff garbage \x01" * 50, "malformed"),
        (BILLION_LAUGHS, "entities"),
    ],
)
def test_malformed_and_entity_xmp_are_entries(packet: bytes, reason: str) -> None:
    found = read_provenance(xmp_file("JPEG", packet))
    assert "xmp" not in found and reason in found["errors"][0] and found["says"] is None


def test_truncated_and_non_image_files_never_raise(tmp_path: Path) -> None:
    data = xmp_file("JPEG", xmp())
    cut = read_provenance(data[: len(data) // 2])  # metadata first, pixels cut off
    assert cut["xmp"]["digital_source_type"] == "trainedAlgorithmicMedia"
    junk = read_provenance(b"not an image at all")
    assert junk["says"] is None and "metadata unreadable" in junk["errors"][0]
    assert read_provenance(tmp_path / "missing.png") is None


def test_records_carry_provenance_and_keep_their_scores(tiny_bundle: Path, tmp_path: Path) -> None:
    files = {
        "xmp.jpg": xmp_file("JPEG", xmp()),
        "plain.png": encoded("PNG"),
        "hostile.jpg": xmp_file("JPEG", b"\x00garbage"),
        "broken.png": b"\x89PNG junk",
    }
    paths = []
    for name, data in files.items():
        paths.append(tmp_path / name)
        paths[-1].write_bytes(data)
    plain = Detector.open(tiny_bundle).score_images(paths)
    told = Detector.open(tiny_bundle, provenance=True).score_images(paths)
    for a, b in zip(plain, told, strict=True):
        assert a.values == {k: v for k, v in b.values.items() if k != "provenance"}
    said = {Path(r.path).name: r.values["provenance"] for r in told}
    assert said["xmp.jpg"]["says"] == "generated" and said["plain.png"] is None
    assert said["hostile.jpg"]["errors"] and told[2].error is None  # scored all the same
    assert told[3].error is not None  # not an image: an error record, as without provenance


def test_detect_cli_formats(tiny_bundle: Path, tmp_path: Path) -> None:
    (tmp_path / "gen.png").write_bytes(xmp_file("PNG", xmp()))
    (tmp_path / "cam.jpg").write_bytes(encoded("JPEG"))
    base = [str(tiny_bundle), str(tmp_path / "gen.png"), str(tmp_path / "cam.jpg"), "-q"]
    rows = runner.invoke(detect_app, [*base, "--provenance", "--format", "jsonl"]).stdout
    records = [json.loads(line) for line in rows.splitlines()]
    assert list(records[0])[-2:] == ["provenance", "error"]
    assert records[0]["provenance"]["says"] == "generated" and records[1]["provenance"] is None
    csv = runner.invoke(detect_app, [*base, "--provenance", "--format", "csv"]).stdout
    assert csv.splitlines()[0].endswith(",provenance,error") and '""says"":""generated""' in csv
    table = runner.invoke(detect_app, [*base, "--provenance", "--format", "table"]).stdout
    assert "[file says: generated]" in table
    without = runner.invoke(detect_app, [*base, "--format", "jsonl"]).stdout
    assert "provenance" not in without


def test_serve_reports_provenance(tiny_bundle: Path) -> None:
    body = multipart([("file", "gen.webp", xmp_file("WEBP", xmp()))])
    with serving(tiny_bundle, "--provenance") as server:
        status, answer, _ = post(
            server.url + "/v1/detect", body, "multipart/form-data; boundary=ufdtest"
        )
    assert status == 200
    assert answer["records"][0]["provenance"]["xmp"]["digital_source_type"] == (
        "trainedAlgorithmicMedia"
    )


# --- Stable Diffusion's invisible watermark (ufd's reader, the package's encoder) -----------


def _marked(kind: str, image: np.ndarray) -> Image.Image:
    from imwatermark import WatermarkEncoder

    from ufd.runtime.provenance.watermark import SDV1, SDXL_BITS

    encoder = WatermarkEncoder()
    if kind == "v1":
        encoder.set_watermark("bytes", SDV1)
    else:
        encoder.set_watermark("bits", SDXL_BITS.tolist())
    return Image.fromarray(encoder.encode(image[:, :, ::-1].copy(), "dwtDct")[:, :, ::-1].copy())


@pytest.mark.parametrize("kind", ["v1", "xl"])
def test_sd_watermark_is_found_and_does_not_survive_jpeg(kind: str) -> None:
    pytest.importorskip("imwatermark", reason="the encoder comes with ufd[dev]")
    from skimage import data

    for pixels in (data.astronaut(), np.asarray(picture((640, 512), seed=3))):
        marked = encoded("PNG", _marked(kind, pixels))
        found = read_provenance(marked)
        assert found["watermark"]["kind"].endswith("v1" if kind == "v1" else "xl")
        assert found["says"] == "generated"
        assert read_provenance(encoded("PNG", Image.fromarray(pixels))) is None
        recompressed = encoded("JPEG", Image.open(io.BytesIO(marked)), quality=100)
        assert read_provenance(recompressed) is None  # why a missing mark says nothing


# --- C2PA content credentials, signed with a test certificate made here ------------------


def _test_signer():
    """An ES256 signer: a leaf certificate issued by a throw-away root (not on any trust list)."""
    c2pa = pytest.importorskip("c2pa", reason="c2pa-python comes with ufd[provenance]")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def name(text: str) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, text),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ufd tests"),
            ]
        )

    def usage(**on: bool) -> x509.KeyUsage:
        flags = (
            "digital_signature",
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "key_cert_sign",
            "crl_sign",
            "encipher_only",
            "decipher_only",
        )
        return x509.KeyUsage(**{f: on.get(f, False) for f in flags})

    def issue(subject, issuer, key, issuer_key, ca: bool):
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if ca:
            builder = builder.add_extension(usage(key_cert_sign=True, crl_sign=True), True)
        else:
            builder = (
                builder.add_extension(usage(digital_signature=True), True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), False)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
                .add_extension(
                    x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                    False,
                )
            )  # c2pa refuses a signing certificate without the key identifiers
        return builder.sign(issuer_key, hashes.SHA256())

    root_key, leaf_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    root = issue(name("ufd test root"), name("ufd test root"), root_key, root_key, ca=True)
    leaf = issue(name("ufd test signer"), root.subject, leaf_key, root_key, ca=False)
    pem = serialization.Encoding.PEM
    chain = leaf.public_bytes(pem) + root.public_bytes(pem)
    key = leaf_key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return c2pa, c2pa.Signer.from_info(c2pa.C2paSignerInfo(b"es256", chain, key, None))


@pytest.fixture(scope="module")
def signed_jpeg() -> bytes:
    c2pa, signer = _test_signer()
    manifest = {
        "claim_generator_info": [{"name": "ufd-test-generator", "version": "1.0"}],
        "title": "generated.jpg",
        "assertions": [
            {
                "label": "c2pa.actions",
                "data": {
                    "actions": [
                        {
                            "action": "c2pa.created",
                            "digitalSourceType": IPTC + "trainedAlgorithmicMedia",
                            "softwareAgent": {"name": "ufd test model"},
                        }
                    ]
                },
            }
        ],
    }
    output = io.BytesIO()
    with c2pa.Builder(manifest) as builder:
        builder.sign(signer, "image/jpeg", io.BytesIO(encoded("JPEG", picture((128, 96)))), output)
    return output.getvalue()


def test_c2pa_signed_image(signed_jpeg: bytes) -> None:
    credentials = read_provenance(signed_jpeg)["c2pa"]
    assert credentials["claim_generator"] == "ufd-test-generator 1.0"
    assert credentials["actions"] == [
        {
            "action": "c2pa.created",
            "digital_source_type": "trainedAlgorithmicMedia",
            "software_agent": "ufd test model",
        }
    ]
    assert credentials["validation_state"] == "Valid" and credentials["intact"]
    assert not credentials["trusted"]  # our own root is on no trust list
    assert credentials["failures"] == ["signingCredential.untrusted"]
    assert read_provenance(signed_jpeg)["says"] == "generated"


def test_c2pa_tampered_image_is_reported_not_believed(signed_jpeg: bytes) -> None:
    tampered = bytearray(signed_jpeg)
    tampered[-200] ^= 0xFF  # one pixel byte after signing
    found = read_provenance(bytes(tampered))
    credentials = found["c2pa"]
    assert credentials["validation_state"] == "Invalid" and not credentials["intact"]
    assert "assertion.dataHash.mismatch" in credentials["failures"]
    assert found["says"] is None  # the claim is there, but nothing it says counts


def test_error_texts_are_the_same_on_every_run() -> None:
    """Pillow's messages name the file object by its address; records never do."""
    import subprocess
    import sys

    from ufd.runtime.io.decode import decode_image
    from ufd.runtime.provenance import read_provenance

    data = b"GIF89a" + b"\0" * 20  # a header, then nothing Pillow can identify
    code = (
        "import sys; from ufd.runtime.provenance import read_provenance as r; "
        "print(r(sys.stdin.buffer.read()))"
    )
    runs = {
        subprocess.run([sys.executable, "-c", code], input=data, capture_output=True).stdout
        for _ in range(2)
    }
    assert len(runs) == 1 and b"0x" not in runs.pop()
    assert read_provenance(data) == read_provenance(bytearray(data))
    assert "0x" not in str(read_provenance(data)["errors"])
    with pytest.raises(ImageError) as first:
        decode_image(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    assert "0x" not in str(first.value)


# --- A1111's stealth parameters (alpha low bits) ---------------------------------------


def _stealth_png(text: str, compressed: bool, size: tuple[int, int] = (64, 48), length=None):
    """An RGBA PNG with ``text`` written as the stealth-pnginfo extension writes it."""
    import gzip

    payload = gzip.compress(text.encode()) if compressed else text.encode()
    signature = b"stealth_pngcomp" if compressed else b"stealth_pnginfo"
    bits_total = 8 * len(payload) if length is None else length
    data = signature + bits_total.to_bytes(4, "big") + payload
    bits = np.unpackbits(np.frombuffer(data, np.uint8))
    width, height = size
    alpha = np.full(width * height, 254, np.uint8)
    alpha[: len(bits)] |= bits
    alpha = alpha.reshape(width, height).T  # the bits run down each column
    rgb = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("compressed", [False, True])
def test_stealth_parameters_are_read_from_the_alpha_bits(compressed: bool) -> None:
    text = "a cat\nSteps: 20, Sampler: Euler, Seed: 1, Model: sd15"
    found = read_provenance(_stealth_png(text, compressed))
    assert found["generator"]["source"] == "stealth:parameters"
    assert found["generator"]["detail"] == "sd15" and found["says"] == "generated"


def test_stealth_that_does_not_fit_is_an_error_entry_and_big_images_are_not_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broken = read_provenance(_stealth_png("Steps: 1, Sampler: x", False, length=8 * 10**6))
    assert broken["says"] is None
    assert broken["errors"] == ["stealth parameters unreadable: ValueError"]
    from ufd.runtime.provenance import stealth

    monkeypatch.setattr(stealth, "MAX_PIXELS", 63 * 48)  # one column short of the image
    assert read_provenance(_stealth_png("Steps: 1, Sampler: x", False)) is None
