"""Conditional denoisers: a class embedding or cross-attention that starts as, and for the
null label stays, exactly the unconditional model."""

from __future__ import annotations

import pytest
import torch

from harness.config import Stage2Config
from harness.models import build_stage2
from harness.models.conditioning import NULL_LABEL, ClassEmbedding
from harness.models.imported import ModelInterfaceError

TINY = {"channels": 8, "channel_mult": [1, 2], "heads": 2, "attention_resolution": 8}
CONDITIONAL = [("fftd", "class"), ("fftd", "cross_attention"), ("unet2d", "class")]


def built(kind: str, conditioning: str = "none", classes: int = 0) -> torch.nn.Module:
    torch.manual_seed(0)
    extra = {"scale_shift": True} if kind == "fftd" else {}
    return build_stage2(Stage2Config(kind=kind, conditioning=conditioning, **TINY, **extra),
                        3, 8, classes).eval()


@pytest.mark.parametrize(("kind", "conditioning"), CONDITIONAL)
def test_a_new_conditional_model_is_the_unconditional_one_for_every_label(
        kind: str, conditioning: str) -> None:
    plain, conditional = built(kind), built(kind, conditioning, 3)
    shared = plain.state_dict()
    extra = {k: v for k, v in conditional.state_dict().items() if k not in shared}
    assert extra, "the conditional model has its own parameters"
    for name, value in shared.items():
        assert torch.equal(conditional.state_dict()[name], value), name
    z, t = torch.randn(4, 3, 8, 8), torch.tensor([3, 50, 100, 7])
    expected = plain(z, t)
    for labels in (torch.tensor([0, 1, 2, NULL_LABEL]), torch.full((4,), NULL_LABEL)):
        assert torch.equal(conditional(z, t, labels), expected)
    # the same draws follow the model's construction (dropout's, the next model's)
    built(kind)
    after_plain = torch.rand(3)
    built(kind, conditioning, 3)
    assert torch.equal(torch.rand(3), after_plain)


@pytest.mark.parametrize(("kind", "conditioning"), CONDITIONAL)
def test_trained_conditioning_changes_the_output_for_its_labels_only(
        kind: str, conditioning: str) -> None:
    model = built(kind, conditioning, 3)
    with torch.no_grad():
        for parameter in model.parameters():  # as if training had moved every weight
            parameter.add_(0.05 * torch.randn_like(parameter))
    z, t = torch.randn(3, 3, 8, 8), torch.tensor([5, 5, 5])
    out = model(z, t, torch.tensor([0, 1, NULL_LABEL]))
    unconditional = model(z, t, torch.full((3,), NULL_LABEL))
    assert not torch.allclose(out[0], out[1])
    assert not torch.allclose(out[0], unconditional[0])
    assert torch.equal(out[2], unconditional[2])


def test_the_null_row_of_the_class_embedding_is_zero_and_never_trained() -> None:
    embedding = ClassEmbedding(4, 6)
    embedding(torch.tensor([NULL_LABEL, 1])).sum().backward()
    grad = embedding.table.weight.grad
    assert grad is not None and not grad[4].any() and grad[1].any()


def test_kinds_that_do_not_implement_a_conditioning_say_so() -> None:
    with pytest.raises(ValueError, match=r"not implemented by stage2\.kind dit"):
        build_stage2(Stage2Config(kind="dit", channels=16, conditioning="class"), 3, 8, 2)
    with pytest.raises(ValueError, match=r"not implemented by stage2\.kind unet2d"):
        build_stage2(Stage2Config(kind="unet2d", conditioning="cross_attention", **TINY), 3,
                     8, 2)
    with pytest.raises(ValueError, match="needs class labels"):
        build_stage2(Stage2Config(conditioning="class", **TINY), 3, 8, 0)
    with pytest.raises(ModelInterfaceError, match="implemented by fftd and unet2d"):
        build_stage2(Stage2Config(kind="tests.models.tiny_denoiser:TinyConvDenoiser",
                                  conditioning="class"), 3, 8, 2)


def test_an_added_embedding_is_erased_by_one_channel_groups_and_scale_shift_is_not() -> None:
    """Why fftd has scale_shift: at width 8 every GroupNorm group is one channel, and the
    time embedding added before it changes the output by rounding only."""
    z = torch.randn(2, 3, 8, 8)
    for scale_shift, erased in ((False, True), (True, False)):
        torch.manual_seed(0)
        model = build_stage2(Stage2Config(channels=8, channel_mult=[1], heads=2,
                                          scale_shift=scale_shift), 3, 8).eval()
        with torch.no_grad():
            early, late = model(z, torch.tensor([1, 1])), model(z, torch.tensor([400, 400]))
        assert torch.allclose(early, late, atol=1e-5) == erased


def test_unet2d_takes_scale_shift_as_diffusers_resnet_time_scale_shift() -> None:
    plain = build_stage2(Stage2Config(kind="unet2d", **TINY), 3, 8)
    shifted = build_stage2(Stage2Config(kind="unet2d", scale_shift=True, **TINY), 3, 8)
    assert plain.unet.config.resnet_time_scale_shift == "default"
    assert shifted.unet.config.resnet_time_scale_shift == "scale_shift"
    z, t = torch.randn(2, 3, 8, 8), torch.tensor([3, 300])
    assert shifted(z, t).shape == z.shape
