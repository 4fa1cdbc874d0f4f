"""Model registry: stage-1 autoencoders are built by name from their config section."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from harness.config import Stage1Config

STAGE1_MODELS: dict[str, Callable[[Stage1Config], nn.Module]] = {}


def register_stage1(name: str) -> Callable[[Callable[[Stage1Config], nn.Module]],
                                           Callable[[Stage1Config], nn.Module]]:
    def add(builder: Callable[[Stage1Config], nn.Module]) -> Callable[[Stage1Config], nn.Module]:
        STAGE1_MODELS[name] = builder
        return builder
    return add


def build_stage1(config: Stage1Config) -> nn.Module:
    return STAGE1_MODELS[config.kind](config)


from harness.models import conv_ae, identity, ivq_vae, kl_ae  # noqa: E402,F401  (register their builders)
