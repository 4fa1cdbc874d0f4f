"""Stage-2 backbones by name, `stage2.kind: unet2d | dit` (diffusers' UNet2DModel and a DiT):
built from the config at tiny sizes, the latent's shape out, float timesteps, the meta
device, a few training steps, and their parameter counts beside FFTD's."""

from __future__ import annotations

import pytest
import torch
from diffusers.models.unets.unet_2d import UNet2DModel

from harness.config import Stage2Config
from harness.models import build_stage2
from harness.models.denoisers.dit import DiT, patch_size
from harness.models.denoisers.unet2d import UNet2D
from harness.stages.stage2 import train_stage2
from tests.models.meta import META

TINY = {"channels": 8, "channel_mult": [1, 2], "heads": 2, "attention_resolution": 4}
KINDS = ["unet2d", "dit"]


def parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def parameter_counts(latent_channels: int = 4, latent_size: int = 16, **settings: object
                     ) -> dict[str, int]:
    """Parameters of every stage-2 kind at one shared setting."""
    return {kind: parameters(build_stage2(Stage2Config(kind=kind, **settings), latent_channels,
                                          latent_size)) for kind in ("fftd", *KINDS)}


@pytest.mark.parametrize("size", [4, 8])
@pytest.mark.parametrize("kind", KINDS)
def test_the_output_has_the_latent_shape_at_float_times(kind: str, size: int) -> None:
    model = build_stage2(Stage2Config(kind=kind, **TINY), 3, size)
    z = torch.randn(2, 3, size, size)
    fractional = model(z, torch.tensor([0.25, 499.5]))  # the Euler sampler's times
    assert fractional.shape == z.shape
    assert not torch.equal(fractional, model(z, torch.tensor([0, 499])))  # t is used


@pytest.mark.parametrize("kind", KINDS)
def test_the_forward_runs_on_the_device_of_its_inputs(kind: str) -> None:
    model = build_stage2(Stage2Config(kind=kind, **TINY), 3, 8).eval().to(META)
    out = model(torch.empty(2, 3, 8, 8, device=META), torch.tensor([0.5, 7.0], device=META))
    assert out.device == META and out.shape == (2, 3, 8, 8)


@pytest.mark.parametrize("kind", KINDS)
def test_a_few_training_steps_run_and_the_loss_is_finite(kind: str) -> None:
    config = Stage2Config(kind=kind, **TINY, T=50, train_steps=3, batch_size=4, log_every=1)
    result = train_stage2(config, torch.randn(8, 3, 8, 8), seed=0)
    assert len(result.history) == 3 and all(torch.isfinite(torch.tensor(result.history)))
    assert parameters(result.ema) == parameters(build_stage2(config, 3, 8))


def test_unet2d_attends_where_attention_resolution_says() -> None:
    model = build_stage2(Stage2Config(kind="unet2d", channels=8, channel_mult=[1, 2, 2],
                                      heads=2, attention_resolution=4, depth=2), 3, 16)
    assert isinstance(model, UNet2D) and isinstance(model.unet, UNet2DModel)
    unet = model.unet.config
    assert unet.down_block_types == ("DownBlock2D", "DownBlock2D", "AttnDownBlock2D")  # 16 8 4
    assert unet.up_block_types == ("AttnUpBlock2D", "UpBlock2D", "UpBlock2D")
    assert unet.block_out_channels == (8, 16, 16) and unet.layers_per_block == 2
    assert unet.attention_head_dim == 4  # channels / heads
    with pytest.raises(ValueError, match="divisible"):  # halved twice: 6 -> 3 -> 1.5
        build_stage2(Stage2Config(kind="unet2d", channels=8, channel_mult=[1, 2, 2]), 3, 6)


def test_dit_takes_width_heads_and_depth_from_the_config() -> None:
    model = build_stage2(Stage2Config(kind="dit", channels=16, heads=4, depth=3), 4, 8)
    assert isinstance(model, DiT)
    transformer = model.transformer.config
    assert (transformer.num_layers, transformer.num_attention_heads,
            transformer.attention_head_dim, transformer.patch_size) == (3, 4, 4, 2)
    assert model.transformer.adaln_single is not None  # adaLN on the timestep alone
    assert model.transformer.caption_projection is None
    assert [patch_size(size) for size in (4, 6, 7, 8, 32)] == [1, 1, 1, 2, 2]
    deeper = build_stage2(Stage2Config(kind="dit", channels=16, heads=4, depth=4), 4, 8)
    assert parameters(deeper) > parameters(model)


def test_parameter_counts_at_a_shared_setting() -> None:
    counts = parameter_counts(channels=32, channel_mult=[1, 2], heads=4,
                              attention_resolution=16)
    print("stage-2 parameters, channels 32, channel_mult [1, 2], heads 4, 4x16x16 latents:",
          counts)
    assert all(count > 0 for count in counts.values())
