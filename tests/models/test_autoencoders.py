"""Stage-1 autoencoders by name: latent shapes for every f, attention, the quantizer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.config import Stage1Config
from harness.data.tensors import to_model_range
from harness.models import STAGE1, build_stage1
from harness.models.autoencoders.quantizer import VectorQuantizerEMA
from tests.models.meta import META


@pytest.mark.parametrize("kind", sorted(set(STAGE1.names()) - {"identity", "pretrained"}))
@pytest.mark.parametrize("f", [1, 2, 4, 8, 16, 32, 64])
def test_latent_shape_for_every_f(kind: str, f: int) -> None:
    model = build_stage1(Stage1Config(kind=kind, f=f, channels=4, latent_channels=3)).eval()
    x = torch.zeros(2, 3, 64, 64)
    with torch.no_grad():
        z = model.encode(x)
        assert z.shape == (2, 3, 64 // f, 64 // f)
        assert model.decode(z).shape == x.shape
        assert model(x).shape == x.shape


def test_attention_runs_only_up_to_max_tokens() -> None:
    config = Stage1Config(f=4, channels=4, attention_max_tokens=16)
    model = build_stage1(config).eval()
    attention = model.encoder.body[-2]
    calls = []
    attention.qkv.register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad():
        model.encode(torch.zeros(1, 3, 16, 16))  # 4x4 = 16 positions: attends
        model.encode(torch.zeros(1, 3, 32, 32))  # 8x8 = 64 positions: skipped
    assert len(calls) == 1


def test_quantizer_returns_its_own_codebook_vectors_with_zero_loss() -> None:
    torch.manual_seed(0)
    quantizer = VectorQuantizerEMA(K=16, dim=4)
    codes = torch.arange(16).roll(5).view(2, 2, 4)  # (b, h, w), every code once
    z_e = quantizer.lookup(codes)
    quantizer.initialized.fill_(True)  # keep the codebook: no data initialization
    for training in (False, True):
        quantizer.train(training)
        out = quantizer(z_e.clone())
        assert torch.equal(out.indices, codes)
        assert torch.allclose(out.z_q, z_e)
        assert out.commitment.item() == 0.0 and out.vq_loss.item() == 0.0
    assert out.usage.item() == 1.0 and out.perplexity.item() == pytest.approx(16.0)


def test_dead_codes_are_restarted_from_encoder_outputs() -> None:
    torch.manual_seed(0)
    quantizer = VectorQuantizerEMA(K=8, dim=2, decay=0.5, dead_code_threshold=0.1).train()
    data = torch.randn(4, 2, 4, 4)
    quantizer(data)  # the first training batch initializes the codebook from data
    assert quantizer.initialized and quantizer.restarts.item() == 0
    quantizer.embedding[4:] = 1000.0  # four codes no encoder output will ever choose
    quantizer.embed_sum[4:] = 1000.0 * quantizer.cluster_size[4:, None]
    for _ in range(6):
        quantizer(data)
    assert quantizer.restarts.item() >= 4
    assert quantizer.embedding.abs().max() < 10  # the far codes sit on data again
    flat = data.permute(0, 2, 3, 1).reshape(-1, 2)
    nearest_data = torch.cdist(quantizer.embedding[4:], flat).min(1).values
    assert nearest_data.max() < 1.0


@pytest.mark.parametrize("kind", ["ivq_vae", "kl"])
def test_tiny_model_overfits_one_batch(kind: str) -> None:
    torch.manual_seed(0)
    config = Stage1Config(kind=kind, f=2, channels=8, latent_channels=4, K=64)
    model = build_stage1(config).train()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
    images[:, :8] = 220
    batch = to_model_range(images)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(150):
        out = model.autoencode(batch)
        loss = (batch - out.reconstruction).abs().mean() + out.regularization
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.4 * np.mean(losses[:5])


@pytest.mark.parametrize("kind", sorted(set(STAGE1.names()) - {"pretrained"}))  # (its own file)
def test_encode_decode_and_autoencode_run_on_the_device_of_the_input(kind: str) -> None:
    f = 1 if kind == "identity" else 4
    model = build_stage1(Stage1Config(kind=kind, f=f, channels=4, latent_channels=3)).eval()
    model = model.to(META)
    x = torch.empty(2, 3, 16, 16, device=META)
    z = model.encode(x)
    assert z.device == META and model.decode(z).device == META
    if kind != "ivq_vae":  # its code statistics (torch.bincount) have no meta kernel
        assert model.autoencode(x).reconstruction.device == META


def test_ivq_decode_is_the_quantizer_forward_without_its_statistics() -> None:
    """decode quantizes as the training forward does (its straight-through value), bit for
    bit, without computing the codes' histogram."""
    torch.manual_seed(0)
    model = build_stage1(Stage1Config(kind="ivq_vae", f=4, channels=4, latent_channels=3,
                                      K=16)).eval()
    z = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(model.decode(z), model.decoder(model.quantizer(z).z_q))
