"""Metrics with the real networks, their weights provisioned from registry packages once."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from harness.cache import ArtifactCache
from harness.data import load_dataset
from harness.metrics import get_pairwise
from harness.metrics.evaluate import evaluate, evaluate_pairs
from harness.metrics.extractor import EXTRACTOR_NAME, Features, get_extractor
from harness.metrics.result import mlflow_fields
from harness.metrics.sets import (
    ReferenceKey,
    evaluate_sets,
    fid_low_rank,
    get_set_metric,
)
from harness.weights import WeightsStore
from tests.helpers import REPO

N = 32  # images per set: Inception runs at a few images/s on 2 CPU cores
SIGMAS = (8.0, 24.0, 64.0)


@pytest.fixture(scope="session")
def real() -> np.ndarray:
    return load_dataset(REPO / "data_manifests" / "skimage_patches.yaml").eval[:N]


def noisy(images: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0, sigma, images.shape)
    return np.clip(images + noise, 0, 255).round().astype(np.uint8)


@pytest.fixture(scope="session")
def features(weights: WeightsStore, real: np.ndarray) -> dict[float, Features]:
    """Inception features of the real set (sigma 0) and of its noisy copies, computed once."""
    extractor = get_extractor(weights)
    return {sigma: extractor.extract(noisy(real, sigma) if sigma else real)
            for sigma in (0.0, *SIGMAS)}


def fid(a: Features, b: Features) -> float:
    return get_set_metric("fid").compute(a.pool3, b.pool3)["fid"]


def kid(a: Features, b: Features) -> float:
    return get_set_metric("kid").compute(a.pool3, b.pool3)["kid"]


def test_fid_of_a_set_against_itself_is_zero(features: dict[float, Features]) -> None:
    assert abs(fid(features[0.0], features[0.0])) < 1e-6
    assert fid(features[0.0], features[8.0]) > 1.0


def test_kid_of_a_set_against_itself_is_the_unbiased_estimators_value(
        features: dict[float, Features]) -> None:
    # KID is torch-fidelity's unbiased MMD^2: on two copies of one set of m images it equals
    # -2 (mean k(x, x) - mean k(x, y)) / (m - 1) exactly (0 only in expectation over draws).
    pool3 = features[0.0].pool3.astype(np.float64)
    kernel = (pool3 @ pool3.T / pool3.shape[1] + 1) ** 3
    expected = -2 * (np.mean(np.diag(kernel)) - kernel.mean()) / (len(pool3) - 1)
    assert kid(features[0.0], features[0.0]) == pytest.approx(expected, rel=1e-4, abs=1e-7)
    assert abs(expected) < kid(features[0.0], features[SIGMAS[-1]]) / 5


def test_fid_and_kid_grow_with_noise(features: dict[float, Features]) -> None:
    fids = [fid(features[0.0], features[s]) for s in SIGMAS]
    kids = [kid(features[0.0], features[s]) for s in SIGMAS]
    assert fids == sorted(fids) and len(set(fids)) == len(fids), fids
    assert kids == sorted(kids) and len(set(kids)) == len(kids), kids


def test_low_rank_fid_equals_torch_fidelitys() -> None:
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

    rng = np.random.default_rng(1)
    a = rng.gamma(2.0, 0.3, (40, 256)).astype(np.float32)
    b = (rng.gamma(2.0, 0.3, (30, 256)) * 1.2).astype(np.float32)
    stats = [fid_features_to_statistics(torch.from_numpy(x)) for x in (a, b)]
    expected = fid_statistics_to_metric(*stats, verbose=False)["frechet_inception_distance"]
    assert fid_low_rank(a, b) == pytest.approx(expected, rel=1e-6)


def test_precision_recall_in_unit_interval(features: dict[float, Features]) -> None:
    values = get_set_metric("pr").compute(features[0.0].pool3, features[8.0].pool3)
    assert all(0.0 <= values[k] <= 1.0 for k in ("precision", "recall", "f_score"))


def test_reference_statistics_cache_hit_does_no_second_pass(
        weights: WeightsStore, real: np.ndarray, tmp_path: Path) -> None:
    extractor = get_extractor(weights)
    cache = ArtifactCache(tmp_path)
    key = ReferenceKey("test-dataset-hash", "eval", 8)
    before = extractor.passes
    first = evaluate_sets(real[:8], noisy(real[:8], 16), ["fid", "kid"], cache, key)
    assert extractor.passes - before == 2  # real and fake
    second = evaluate_sets(real[:8], noisy(real[:8], 16), ["fid", "kid"], cache, key)
    assert extractor.passes - before == 3  # the fake set only: the reference came from the cache
    assert [r.value for r in first] == [r.value for r in second]
    assert all(r.num_images == 8 and r.num_reference == 8 for r in first)
    assert all(r.weights_sha256 == extractor.weights_sha256 and r.extractor for r in first)


def test_is_without_logits_weights_is_unavailable_with_a_reason(
        weights: WeightsStore, real: np.ndarray) -> None:
    extractor = get_extractor(weights)
    before = extractor.passes
    results = evaluate_sets(None, real[:12], ["is"])
    assert [r.name for r in results] == ["is", "is_std"]
    assert all(r.value is None and "logits" in (r.unavailable_reason or "") for r in results)
    assert extractor.passes == before  # nothing to compute, so no Inception pass


def test_full_inception_file_serves_pool3_and_is_in_one_pass(
        weights: WeightsStore, real: np.ndarray, features: dict[float, Features],
        tmp_path: Path) -> None:
    """torch-fidelity's layout with a logits layer (here a random one: the real file is not
    reachable offline) is recognized by its keys, preferred for pool3 and enables IS."""
    state = torch.load(weights.resolve("inception-pool3").path, weights_only=True)
    generator = torch.Generator().manual_seed(0)
    state["fc.weight"] = torch.randn(1008, 2048, generator=generator) * 0.01
    state["fc.bias"] = torch.zeros(1008)
    torch.save(state, tmp_path / "full.pth")
    store = WeightsStore(tmp_path / "weights", hub_dir=tmp_path / "hub")
    with pytest.raises(Exception, match="allow-unverified"):
        store.import_weights(tmp_path / "full.pth")
    assert store.import_weights(tmp_path / "full.pth", allow_unverified=True)[0] == "inception-full"
    statuses = {s.network: s for s in store.status()}
    assert statuses["inception-logits"].available
    assert "unverified" in (statuses["inception-logits"].source or "")
    extractor = get_extractor(store)
    results = {r.name: r for r in evaluate_sets(None, real[:10], ["is"], weights=store)}
    assert extractor.passes == 1
    assert results["is"].value is not None and results["is"].value >= 1.0
    assert results["is"].weights_sha256 == statuses["inception-logits"].sha256
    same = extractor.extract(real[:4]).pool3
    np.testing.assert_allclose(same, features[0.0].pool3[:4], atol=1e-4)


def test_torch_fidelity_plain_path_matches_the_fast_path(weights: WeightsStore,
                                                         real: np.ndarray) -> None:
    from torch_fidelity.utils import create_feature_extractor, get_featuresdict_from_dataset

    images = real[:4]
    plain = create_feature_extractor(EXTRACTOR_NAME, ["2048"], cuda=False, verbose=False)
    dataset = [torch.from_numpy(image.copy()).permute(2, 0, 1) for image in images]

    class Images(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(dataset)

        def __getitem__(self, index: int) -> torch.Tensor:
            return dataset[index]

    expected = get_featuresdict_from_dataset(Images(), plain, 64, False, True, False)["2048"]
    got = get_extractor(weights).extract(images).pool3
    assert np.abs(got - expected.numpy()).max() < 1e-4


def test_lpips_identical_is_zero_and_orders_distortions(weights: WeightsStore,
                                                        real: np.ndarray) -> None:
    lpips = get_pairwise("lpips")
    images = real[:8]
    assert lpips.fn(images, images) == pytest.approx(0.0, abs=1e-7)
    mild, strong = lpips.fn(images, noisy(images, 4)), lpips.fn(images, noisy(images, 32))
    assert 0 < mild < strong
    [small] = evaluate_pairs(images[:, :16, :16], images[:, :16, :16], ["lpips"])
    assert small.value is None and "31x31" in (small.unavailable_reason or "")


def test_converted_lpips_linear_layers_equal_lpips_v01_alex_pth(weights: WeightsStore) -> None:
    import lpips

    reference = torch.load(Path(lpips.__file__).parent / "weights" / "v0.1" / "alex.pth",
                           map_location="cpu", weights_only=True)
    converted = torch.load(weights.resolve("lpips-alex").path, weights_only=True)
    assert len(reference) == 5
    for key, value in reference.items():
        assert torch.equal(converted[key], value), key


def test_psnr_matches_the_formula_on_a_known_mse() -> None:
    rng = np.random.default_rng(0)
    real = rng.integers(10, 246, (4, 16, 16, 3), dtype=np.uint8)
    sign = np.where(np.indices(real.shape).sum(0) % 2 == 0, 1, -1)
    fake = (real.astype(np.int16) + 3 * sign).astype(np.uint8)  # every pixel off by 3: MSE 9
    assert get_pairwise("psnr").fn(real, fake) == pytest.approx(10 * math.log10(255**2 / 9),
                                                                abs=1e-9)


def test_evaluate_records_provenance_and_flattens_for_mlflow(weights: WeightsStore,
                                                             real: np.ndarray) -> None:
    results = evaluate_pairs(real[:4], noisy(real[:4], 8), ["psnr", "lpips"])
    assert results[1].extractor and results[1].weights_sha256 == weights.resolve(
        "lpips-alex").sha256
    fields = mlflow_fields([*results, *evaluate_sets(None, real[:12], ["is"])], "recon/")
    assert set(fields.metrics) == {"recon/psnr", "recon/lpips"}
    assert fields.params["recon/lpips.weights_sha256"] == results[1].weights_sha256
    assert fields.params["recon/psnr.num_images"] == "4"
    assert "logits" in fields.tags["recon/is.unavailable"]


def test_evaluate_dispatches_by_name(weights: WeightsStore, real: np.ndarray) -> None:
    with pytest.raises(KeyError, match="nope"):
        evaluate(real[:4], real[:4], ["psnr", "nope"])
    results = evaluate(real[:4], real[:4], ["l1", "ssim"])
    assert [(r.name, r.value) for r in results] == [("l1", 0.0), ("ssim", 1.0)]


def _cli(argv: list[str]) -> int:
    from harness.metrics.cli import add_commands

    parser = argparse.ArgumentParser(prog="harness")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.handler(args)


def test_metrics_command_on_paired_folders(weights: WeightsStore, real: np.ndarray,
                                           tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no hub file with logits
    for folder, images in (("real", real[:4]), ("fake", noisy(real[:4], 8))):
        (tmp_path / folder).mkdir()
        for index, image in enumerate(images):
            Image.fromarray(image).save(tmp_path / folder / f"{index}.png")
    code = _cli(["metrics", "--real", str(tmp_path / "real"), "--fake", str(tmp_path / "fake"),
                 "--pairs", "--metrics", "psnr,lpips,is", "--weights-dir", str(weights.root),
                 "--no-cache", "--no-progress", "--json", str(tmp_path / "out.json")])
    out = capsys.readouterr().out
    assert code == 0
    assert "psnr" in out and "lpips" in out and "unavailable" in out
    assert (tmp_path / "out.json").is_file()
