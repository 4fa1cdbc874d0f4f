"""Classifier-free guidance: eps_u + s (eps_c - eps_u) around any conditional denoiser."""

from __future__ import annotations

import pytest
import torch

from harness.config import Stage2Config
from harness.diffusion.guidance import Guided, evaluations_per_step
from harness.diffusion.processes import process_of
from harness.diffusion.samplers import make_sampler, sample
from harness.models import build_stage2
from harness.models.conditioning import NULL_LABEL

CONFIG = Stage2Config(channels=8, channel_mult=[1], heads=2, T=20, conditioning="class",
                      scale_shift=True)


def trained_looking_model() -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_stage2(CONFIG, 3, 4, 2).eval()
    with torch.no_grad():
        model.class_embed.table.weight[:2].normal_()  # labels that change the output
    return model


def test_guidance_combines_the_conditional_and_unconditional_predictions() -> None:
    model = trained_looking_model()
    z, t, labels = torch.randn(3, 3, 4, 4), torch.tensor([2, 9, 17]), torch.tensor([0, 1, 0])
    with torch.no_grad():
        conditional = model(z, t, labels)
        unconditional = model(z, t, torch.full((3,), NULL_LABEL))
        assert torch.equal(Guided(model, labels, 1.0)(z, t), conditional)
        assert torch.equal(Guided(model, labels, 0.0)(z, t), unconditional)
        guided = Guided(model, labels, 3.0)(z, t)
    assert torch.allclose(guided, unconditional + 3.0 * (conditional - unconditional),
                          atol=1e-5)
    assert not torch.allclose(guided, conditional, atol=1e-3)


@pytest.mark.parametrize(("scale", "evaluations"), [(0.0, 1), (1.0, 1), (1.5, 2), (5.0, 2)])
def test_a_guided_step_costs_two_evaluations_unless_s_is_0_or_1(scale: float,
                                                               evaluations: int) -> None:
    assert evaluations_per_step(scale) == evaluations


@pytest.mark.parametrize("sampler", ["ddim", "ddpm", "dpmsolver++", "heun"])
def test_s_1_is_plain_conditional_sampling_bit_for_bit(sampler: str) -> None:
    model = trained_looking_model()
    chosen = make_sampler(sampler, process_of(CONFIG), "eps", 5)
    labels = torch.tensor([0, 1, 1, 0])

    def conditional(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return model(z, t, labels)

    plain = sample(conditional, chosen, (4, 3, 4, 4), torch.Generator().manual_seed(3))
    guided = sample(Guided(model, labels, 1.0), chosen, (4, 3, 4, 4),
                    torch.Generator().manual_seed(3))
    assert torch.equal(guided, plain)
    stronger = sample(Guided(model, labels, 2.0), chosen, (4, 3, 4, 4),
                      torch.Generator().manual_seed(3))
    assert not torch.allclose(stronger, plain, atol=1e-3)
