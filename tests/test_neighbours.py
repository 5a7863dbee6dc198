"""UnivFD NN: the vote rules, the bank, ufd-index and ufd-detect --method nn."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import hnswlib
import numpy as np
import pytest
from helpers import random_image
from typer.testing import CliRunner

from ufd.cli.detect import app as detect_app
from ufd.cli.index import app as index_app
from ufd.runtime import BundleError, Detector
from ufd.runtime.building.banks import IndexOptions, build_index
from ufd.runtime.bundle.manifest import Manifest
from ufd.runtime.errors import ExportError
from ufd.runtime.methods import config_types
from ufd.runtime.search.base import FloatBank, l2_normalise
from ufd.runtime.search.hnsw import HnswBank
from ufd.runtime.search.neighbours import LabelledBank, knn_vote

runner = CliRunner()
DIM = 768


def clustered(n: int, seed: int, shift: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(0).normal(size=(20, DIM))
    x = centres[rng.integers(0, 20, n)] + rng.normal(0, 0.3, (n, DIM))
    x[:, :8] += shift
    return x.astype(np.float32)


# --- the vote rules -------------------------------------------------------------------


def paper_k1(query: np.ndarray, real: np.ndarray, fake: np.ndarray) -> bool:
    """UnivFD NN, k=1: fake iff min_i d(x, fake_i) < min_i d(x, real_i), cosine distance."""
    q = query / np.linalg.norm(query)
    d_real = 1 - (real / np.linalg.norm(real, axis=1, keepdims=True)) @ q
    d_fake = 1 - (fake / np.linalg.norm(fake, axis=1, keepdims=True)) @ q
    return bool(d_fake.min() < d_real.min())


def test_k1_rule_equals_the_paper_formula() -> None:
    real, fake = clustered(300, 1), clustered(300, 2, shift=0.4)
    bank = LabelledBank(
        HnswBank.build(np.concatenate([real, fake])),
        np.r_[np.zeros(300), np.ones(300)].astype(np.uint8),
        exact_below=10**9,
    )
    queries = np.concatenate([clustered(100, 3), clustered(100, 4, shift=0.4)])
    vote = bank.vote(queries, k=1, exact=True)
    expected = [paper_k1(q, real, fake) for q in queries]
    assert vote.is_fake.tolist() == expected
    assert 0.1 < np.mean(expected) < 0.9  # both outcomes really occur
    assert ((vote.score > 0.5) == vote.is_fake).all()


def test_k_vote_majority_and_tie_break() -> None:
    dist = np.array([[0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.3, 0.4], [0.1, 0.25, 0.3, 0.35]])
    fake = np.array([[1, 1, 0, 0], [0, 1, 1, 0], [0, 1, 1, 0]], dtype=bool)
    vote = knn_vote(dist, fake, k=3)
    assert vote.is_fake.tolist() == [True, True, True]
    np.testing.assert_allclose(vote.score, [2 / 3, 2 / 3, 2 / 3])
    tie = knn_vote(dist, fake, k=4)  # two each: smaller mean distance wins
    # row 0: fake mean 0.15 < real 0.35; row 1: fake 0.25 = real 0.25 -> real (not smaller)
    assert tie.is_fake.tolist() == [True, False, False]
    np.testing.assert_allclose(vote.dist_real, [0.3, 0.1, 0.1])
    np.testing.assert_allclose(vote.dist_fake, [0.1, 0.2, 0.25])


def test_absent_class_distance_is_nan_and_score_bounded() -> None:
    dist = np.array([[0.1, 0.2, 0.3]])
    vote = knn_vote(dist, np.zeros((1, 3), bool), k=1)
    assert not vote.is_fake[0] and np.isnan(vote.dist_fake[0])
    assert vote.score[0] == pytest.approx(0.1 / (0.1 + 0.3))  # fake bounded by the 3rd


def test_hnsw_votes_equal_exact_on_a_small_bank() -> None:
    real, fake = clustered(1000, 5), clustered(1000, 6, shift=0.3)
    bank = LabelledBank(
        HnswBank.build(np.concatenate([real, fake]), ef=200),
        np.r_[np.zeros(1000), np.ones(1000)].astype(np.uint8),
        exact_below=0,
    )
    queries = np.concatenate([clustered(200, 7), clustered(200, 8, shift=0.3)])
    for k in (1, 3, 9):
        exact, hnsw = bank.vote(queries, k, exact=True), bank.vote(queries, k, exact=False)
        # HNSW is approximate (and its multi-threaded build is not deterministic): on this
        # easy bank it must agree on >= 99 % of decisions and nearly every score
        assert np.mean(exact.is_fake == hnsw.is_fake) >= 0.99
        assert np.mean(np.abs(exact.score - hnsw.score) <= 1e-5) >= 0.99


def test_bank_save_load_round_trip_and_append(tmp_path: Path) -> None:
    vectors = clustered(500, 9)
    bank = HnswBank.build(vectors[:300], ef=50)
    bank.add(vectors[300:])
    bank.save(tmp_path / "b.hnsw")
    loaded = HnswBank.load(tmp_path / "b.hnsw", DIM, ef=77)
    assert len(loaded) == 500 and loaded.ef == 77
    np.testing.assert_allclose(loaded.vectors(), l2_normalise(vectors), atol=1e-6)
    ids, dist = loaded.search(vectors[:5], 3, exact=False)
    assert ids[:, 0].tolist() == [0, 1, 2, 3, 4] and np.abs(dist[:, 0]).max() < 1e-5


# --- building into a bundle -----------------------------------------------------------


@pytest.fixture
def bundle_copy(tiny_bundle: Path, tmp_path: Path) -> Path:
    target = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, target)
    return target


def test_quality_queries_are_held_out_of_the_bank_then_join_it() -> None:
    from ufd.runtime.building.bank_quality import held_out_order

    order, n = held_out_order(700, 500, seed=3)
    assert n == 140 and sorted(order.tolist()) == list(range(700))  # every vector, once
    again, _ = held_out_order(700, 500, seed=3)
    assert (order == again).all()  # seeded: the same bank order every build
    assert held_out_order(1, 500, 0)[1] == 0 and held_out_order(4, 500, 0)[1] == 1


def test_build_index_records_parameters_and_quality(bundle_copy: Path) -> None:
    options = IndexOptions(ef=64, exact_below=100)
    manifest = build_index(bundle_copy, clustered(400, 1), clustered(300, 2, 0.4), options)
    info = manifest.methods["nn"].config
    quality = manifest.method_provenance("nn")["quality"]
    assert info.counts == {"real": 400, "fake": 300} and info.dim == DIM and info.ef == 64
    assert quality["recall_at_1"] >= 0.95 and quality["n_queries"] == 700 // 5  # held out
    assert {"index/bank.usearch", "index/labels.npy"} <= set(manifest.files)
    assert (info.backend, info.storage) == ("usearch", "fp32")  # the default below 100k
    reread = Manifest.read(bundle_copy / "manifest.json", config_types())
    assert reread == manifest
    bank = Detector.open(bundle_copy, precision="fp32", provider="cpu").methods.get("nn").bank
    assert len(bank.bank) == 700 and bank.bank.ef == 64 and not bank.use_exact(None)

    appended = build_index(
        bundle_copy, clustered(10, 3), np.zeros((0, DIM), np.float32), options, append=True
    )
    assert appended.methods["nn"].config.counts == {"real": 410, "fake": 300}


@pytest.mark.parametrize(
    ("real", "fake", "message"),
    [
        (0, 0, "0 real and 0 fake"),
        (50, 0, "Add fake images"),
        (0, 50, "Add real images"),
    ],
)
def test_empty_or_one_class_bank_is_refused(
    bundle_copy: Path, real: int, fake: int, message: str
) -> None:
    with pytest.raises(ExportError, match=message):
        build_index(bundle_copy, clustered(real, 1), clustered(fake, 2), IndexOptions())
    assert Manifest.read(bundle_copy / "manifest.json", config_types()).method("nn") is None


def test_feature_dimension_mismatch_is_refused(bundle_copy: Path, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.ones((10, 512), np.float32))
    result = runner.invoke(index_app, [str(bundle_copy), "--real-features", str(wrong)])
    assert result.exit_code == 2 and "expected (N, 768)" in result.stderr
    # an index whose dimension disagrees with the encoder is refused at load
    build_index(bundle_copy, clustered(20, 1), clustered(20, 2), IndexOptions())
    data = json.loads((bundle_copy / "manifest.json").read_text())
    data["methods"]["nn"]["config"]["dim"] = 512
    (bundle_copy / "manifest.json").write_text(json.dumps(data))
    detector = Detector.open(bundle_copy, precision="fp32", provider="cpu")
    with pytest.raises(BundleError, match="512-d features but the encoder gives 768-d"):
        detector.methods.get("nn")


def test_ufd_index_cli_encodes_folders_and_skips_bad_images(
    bundle_copy: Path, tmp_path: Path
) -> None:
    real_dir, fake_dir = tmp_path / "real", tmp_path / "fake"
    real_dir.mkdir(), fake_dir.mkdir()
    for i in range(4):
        random_image(real_dir / f"r{i}.png", (240, 240), seed=i)
        random_image(fake_dir / f"f{i}.jpg", (300, 200), "L", seed=10 + i)
    (fake_dir / "broken.png").write_bytes(b"nope")
    result = runner.invoke(
        index_app, [str(bundle_copy), "--real", str(real_dir), "--fake", str(fake_dir)]
    )
    assert result.exit_code == 0, result.output
    assert "indexed 4 real + 4 fake" in result.stdout and "1 images skipped" in result.stdout
    assert "skipped" in result.stderr and "broken.png" in result.stderr

    images = [str(real_dir / "r0.png"), str(fake_dir / "f1.jpg")]
    options = ["--method", "all", "--k", "1", "--format", "jsonl", "--precision", "fp32"]
    out = runner.invoke(detect_app, [str(bundle_copy), *images, *options])
    assert out.exit_code == 0, out.output
    records = [json.loads(line) for line in out.stdout.splitlines()]
    # a bank member is its own nearest neighbour: distance ~0, its own label
    assert records[0]["nn_label"] == "real" and records[0]["nn_dist_real"] < 1e-5
    assert records[1]["nn_label"] == "fake" and records[1]["nn_dist_fake"] < 1e-5
    assert {"logit", "prob", "label", "nn_score"} <= set(records[0])
    assert "exact search over 8 vectors" in out.stderr


def test_detect_nn_without_index_explains(tiny_bundle: Path, tmp_path: Path) -> None:
    image = random_image(tmp_path / "x.png", (224, 224))
    result = runner.invoke(detect_app, [str(tiny_bundle), str(image), "--method", "nn"])
    assert result.exit_code == 2 and "ufd-index" in result.stderr


def test_exact_search_streams_large_banks_identically(monkeypatch: pytest.MonkeyPatch) -> None:
    import ufd.runtime.search.base as base
    import ufd.runtime.search.hnsw as nb

    rng = np.random.default_rng(0)
    vectors, queries = rng.normal(size=(3000, 32)), rng.normal(size=(50, 32))
    bank = HnswBank.build(vectors)
    whole = bank.search(queries, 9, exact=True)
    monkeypatch.setattr(base, "_EXACT_BANK_CHUNK", 700)  # 5 blocks, the last one partial
    monkeypatch.setattr(nb, "_free_memory_bytes", lambda: 1000)  # no room for a copy
    bank._rows = None
    streamed = bank.search(queries, 9, exact=True)
    # the same neighbours; distances equal up to float32 rounding of different BLAS blockings
    assert np.array_equal(whole[0], streamed[0])
    np.testing.assert_allclose(whole[1], streamed[1], atol=1e-6)


def _counting_get_items(monkeypatch: pytest.MonkeyPatch, bank: HnswBank) -> list[int]:
    """Record how many vectors each ``get_items`` call on ``bank``'s index reads."""
    reads: list[int] = []
    index = bank.index

    class Counting:
        def __getattr__(self, name: str) -> object:
            return getattr(index, name)

        def get_items(self, ids: np.ndarray) -> object:
            reads.append(len(ids))
            return index.get_items(ids)

    monkeypatch.setattr(bank, "index", Counting())
    return reads


def test_forced_exact_search_reads_a_bank_that_fits_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Any bank size: the copy is kept when it fits in a quarter of the free memory."""
    import ufd.runtime.search.hnsw as nb

    rng = np.random.default_rng(0)
    bank = HnswBank.build(rng.normal(size=(3000, 32)))
    reads = _counting_get_items(monkeypatch, bank)
    monkeypatch.setattr(nb, "_free_memory_bytes", lambda: 4 * 3000 * 32 * 4)  # exactly fits
    for _ in range(3):
        bank.search(rng.normal(size=(5, 32)), 9, exact=True)
    assert reads == [3000]


def test_forced_exact_search_without_room_rereads_and_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import ufd.runtime.search.hnsw as nb

    rng = np.random.default_rng(0)
    bank = HnswBank.build(rng.normal(size=(3000, 32)))
    reads = _counting_get_items(monkeypatch, bank)
    monkeypatch.setattr(nb, "_free_memory_bytes", lambda: 4 * 3000 * 32 * 4 - 4)  # 1 byte short
    with caplog.at_level("WARNING", logger="ufd.runtime.search.neighbours"):
        for _ in range(2):
            bank.search(rng.normal(size=(5, 32)), 9, exact=True)
    assert reads == [3000, 3000] and bank._rows is None
    warnings = [r.getMessage() for r in caplog.records if "every search" in r.getMessage()]
    assert len(warnings) == 1 and "--exact" in warnings[0]


def _saved_shuffled_bank(tmp_path: Path, n: int = 3000, dim: int = 32) -> tuple[Path, np.ndarray]:
    """An index file whose storage order is not id order (as threaded adds make it)."""
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(n, dim)).astype(np.float32)
    index = hnswlib.Index(space="cosine", dim=dim)
    index.init_index(max_elements=n, M=8, ef_construction=32)
    ids = rng.permutation(n)
    index.add_items(vectors[ids], ids, num_threads=1)
    path = tmp_path / "bank.bin"
    index.save_index(str(path))
    return path, l2_normalise(vectors)


@pytest.mark.parametrize("room", [True, False], ids=["copy-kept", "no-room"])
def test_exact_search_of_a_loaded_bank_reads_its_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, room: bool
) -> None:
    import ufd.runtime.search.base as base
    import ufd.runtime.search.hnsw as nb

    path, unit = _saved_shuffled_bank(tmp_path)
    bank = HnswBank.load(path, dim=32, ef=64)
    reads = _counting_get_items(monkeypatch, bank)
    monkeypatch.setattr(nb, "_free_memory_bytes", lambda: 10**12 if room else 1000)
    monkeypatch.setattr(base, "_EXACT_BANK_CHUNK", 700)
    queries = np.random.default_rng(2).normal(size=(20, 32))
    for _ in range(2):
        ids, dist = bank.search(queries, 9, exact=True)
        truth = np.argsort(1.0 - l2_normalise(queries) @ unit.T, axis=1, kind="stable")[:, :9]
        assert np.array_equal(ids, truth)
        np.testing.assert_allclose(
            dist, 1.0 - np.sum(l2_normalise(queries)[:, None] * unit[ids], -1), atol=1e-6
        )
    assert max(reads) <= 8  # only the layout check's sample came out of hnswlib
    assert (bank._rows is not None) == room


def test_index_file_that_disagrees_with_the_index_is_not_used(tmp_path: Path) -> None:
    from ufd.runtime.search.hnsw_file import read_stored_rows

    path, _ = _saved_shuffled_bank(tmp_path)
    bank = HnswBank.load(path, dim=32, ef=64)
    assert read_stored_rows(path, bank.index) is not None
    data = bytearray(path.read_bytes())
    count, per_row, _, data_at = struct.unpack_from("<4Q", data, 16)
    last_vector = 96 + (count - 1) * per_row + data_at  # the last row is always checked
    data[last_vector : last_vector + 4] = struct.pack("<f", 2.0)
    path.write_bytes(bytes(data))
    assert read_stored_rows(path, bank.index) is None
    path.write_bytes(bytes(data[:96]))  # header only: too short for its row count
    assert read_stored_rows(path, bank.index) is None


def test_query_ef_is_chosen_by_the_build_time_check(bundle_copy: Path) -> None:
    """Default ef: the smallest that reaches recall@1 >= 0.99 and 99.9 % agreement."""
    from ufd.runtime.building.bank_quality import AUTO_EF

    manifest = build_index(bundle_copy, clustered(1500, 1), clustered(1500, 2, 0.3), IndexOptions())
    ef = manifest.methods["nn"].config.ef
    quality = manifest.method_provenance("nn")["quality"]
    assert ef in AUTO_EF
    assert quality["recall_at_1"] >= 0.99 or ef == AUTO_EF[-1]
    assert min(quality["vote_agreement_k1"], quality["vote_agreement_k"]) >= 0.999, (ef, quality)
    if ef != AUTO_EF[0]:  # a smaller ef was tried and missed the bar
        smaller = AUTO_EF[AUTO_EF.index(ef) - 1]
        again = build_index(
            bundle_copy, clustered(1500, 1), clustered(1500, 2, 0.3), IndexOptions(ef=smaller)
        )
        q = again.method_provenance("nn")["quality"]
        assert q["recall_at_1"] < 0.99 or min(q["vote_agreement_k1"], q["vote_agreement_k"]) < 0.999


def test_graph_degree_default_grows_with_the_bank(bundle_copy: Path) -> None:
    from ufd.runtime.building.banks import default_m

    assert default_m(100_000) == 16 and default_m(1_000_000) == 32
    manifest = build_index(bundle_copy, clustered(50, 1), clustered(50, 2), IndexOptions())
    assert manifest.method_provenance("nn")["m"] == 16


@pytest.mark.parametrize(
    ("backend", "storage"),
    [("usearch", "fp32"), ("usearch", "fp16"), ("usearch", "int8"), ("hnswlib", "fp32")],
)
def test_every_backend_and_storage_votes_like_exact_fp32(
    bundle_copy: Path, backend: str, storage: str
) -> None:
    real, fake = clustered(1500, 1), clustered(1500, 2, 0.3)
    options = IndexOptions(backend=backend, storage=storage, exact_below=100)
    manifest = build_index(bundle_copy, real, fake, options)
    config = manifest.methods["nn"].config
    assert (config.backend, config.storage) == (backend, storage)
    files = manifest.methods["nn"].files
    assert ("vectors" in files) == (storage == "int8")  # fp32 rows re-rank the int8 graph
    quality = manifest.method_provenance("nn")["quality"]  # measured against exact fp32
    assert quality["recall_at_1"] >= 0.98 and quality["vote_agreement_k"] >= 0.99
    exact_like_fp32 = storage != "fp16"  # int8 re-ranks with fp32 rows
    queries = np.concatenate([clustered(200, 7), clustered(200, 8, shift=0.3)])
    reference = LabelledBank(
        FloatBank(l2_normalise(np.concatenate([real, fake]))),
        np.r_[np.zeros(1500), np.ones(1500)],
        exact_below=0,
    )
    bank = Detector.open(bundle_copy, precision="fp32", provider="cpu").methods.get("nn").bank
    for k in (1, 9):
        truth = reference.vote(queries, k, exact=True)
        for exact in (False, True):
            vote = bank.vote(queries, k, exact=exact)
            assert np.mean(vote.is_fake == truth.is_fake) >= 0.99, (k, exact)
            close = np.abs(np.nan_to_num(vote.dist_real) - np.nan_to_num(truth.dist_real))
            assert np.median(close) < (1e-5 if exact_like_fp32 else 1e-3)


def test_int8_bank_reads_rows_without_mapping_them(bundle_copy: Path) -> None:
    from ufd.runtime.building.bank_quality import held_out_order
    from ufd.runtime.search.vector_file import VectorFile

    manifest = build_index(
        bundle_copy, clustered(300, 1), clustered(300, 2, 0.3), IndexOptions(storage="int8")
    )
    rows = VectorFile(bundle_copy / manifest.methods["nn"].files["vectors"])
    assert len(rows) == 600 and rows.rows(np.array([5, 0])).shape == (2, DIM)
    expected = l2_normalise(np.concatenate([clustered(300, 1), clustered(300, 2, 0.3)]))
    stored = rows.rows(np.arange(600))
    order, _ = held_out_order(600, IndexOptions().check_queries, IndexOptions().seed)
    np.testing.assert_allclose(stored, expected[order], atol=1e-6)  # quality queries last
    np.testing.assert_array_equal(rows.rows(np.array([5, 0])), stored[[5, 0]])
    blocks = np.concatenate([b for b, _ in rows.blocks()])
    np.testing.assert_array_equal(blocks, rows.rows(np.arange(600)))
