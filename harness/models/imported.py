"""Your own model class as a kind, `kind: "package.module:ClassName"`: built, then checked.

The registries (harness.models) import the class when a model is built (the schema checks
only the path's form) and pass it here, to be called like a registered builder: stage 1
`ClassName(config)`, stage 2 `ClassName(config, latent_channels, latent_size)`. The instance
is checked against what the harness calls, and one error names everything missing:

  stage 1  a torch.nn.Module with encode(x) -> z, decode(z) -> x and attributes f and
           latent_channels (equal to stage1.f and stage1.latent_channels); with trainable
           parameters also autoencode(x) -> Stage1Output, and last_layer() while the GAN term
           is on (stage1.adversarial_weight > 0)
  stage 2  a torch.nn.Module whose forward takes (z_t, t)

A stage-1 model is wrapped in `ImportedStage1`, so that it has the rest of Stage1Model
(forward, parameter_count) whatever it subclasses; one without parameters to train
reconstructs as decode(encode(x)) and is not trained.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from harness.config import Stage1Config, Stage2Config
from harness.errors import HarnessError
from harness.models.autoencoders.base import Stage1Model, Stage1Output

STAGE1_INTERFACE = ("encode(x), decode(z), attributes f and latent_channels; to be trained "
                    "also autoencode(x) -> Stage1Output (and last_layer() for the GAN term)")
STAGE2_INTERFACE = "forward(z_t, t) returning a tensor of z_t's shape"


class ModelInterfaceError(HarnessError):
    """An imported model class that lacks part of the interface the harness calls."""


def _implements(model: object, name: str) -> bool:
    """A callable `name` that is not Stage1Model's NotImplementedError placeholder."""
    own = getattr(type(model), name, None)
    return callable(getattr(model, name, None)) and own is not getattr(Stage1Model, name, None)


def _construct(factory: Callable[..., Any], kind: str, key: str, arguments: tuple[Any, ...],
               call: str) -> nn.Module:
    """The class called with `arguments`, which must make a torch.nn.Module."""
    try:
        inspect.signature(factory).bind(*arguments)
    except TypeError as error:
        raise ModelInterfaceError(f"{key}: {kind} is called as {call}, which its signature "
                                  f"does not take ({error})") from None
    except ValueError:  # no signature to inspect (a builtin): let the call say
        pass
    model = factory(*arguments)
    if not isinstance(model, nn.Module):
        raise ModelInterfaceError(f"{key}: {kind} made a {type(model).__name__}, not a "
                                  "torch.nn.Module (the cache saves its state_dict)")
    return model


class ImportedStage1(Stage1Model):
    """Stage1Model around a model with the stage-1 interface."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.f, self.latent_channels = int(model.f), int(model.latent_channels)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.encode(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.model.decode(z)

    def autoencode(self, x: torch.Tensor) -> Stage1Output:
        if _implements(self.model, "autoencode"):
            return self.model.autoencode(x)
        return Stage1Output(self.decode(self.encode(x)), x.new_zeros(()))

    def last_layer(self) -> torch.Tensor:
        return self.model.last_layer()

    def parameter_count(self) -> int:
        count = getattr(self.model, "parameter_count", None)  # a Stage1Model's own count
        return int(count()) if callable(count) else super().parameter_count()


def stage1_from_class(factory: Callable[..., Any], kind: str, config: Stage1Config
                      ) -> ImportedStage1:
    """The stage-1 model `factory(config)`, checked and wrapped (the STAGE1 adapter)."""
    model = _construct(factory, kind, "stage1.kind", (config,), "ClassName(config: Stage1Config)")
    needed = {"encode": "", "decode": ""}
    if any(p.requires_grad for p in model.parameters()):
        needed["autoencode"] = " (it has parameters to train)"
        if config.adversarial_weight > 0 and config.adversarial_start < config.train_steps:
            needed["last_layer"] = " (for the GAN term: stage1.adversarial_weight > 0)"
    missing = [f"{name}(){why}" for name, why in needed.items() if not _implements(model, name)]
    missing += [f"attribute {name} (an int)" for name in ("f", "latent_channels")
                if not isinstance(getattr(model, name, None), int)]
    if missing:
        raise ModelInterfaceError(f"stage1.kind: {kind} lacks {', '.join(missing)}; a stage-1 "
                                  f"model has {STAGE1_INTERFACE}")
    for name in ("f", "latent_channels"):
        if getattr(model, name) != getattr(config, name):
            raise ModelInterfaceError(
                f"stage1.{name}: {getattr(config, name)}, but {kind} has "
                f"{name}={getattr(model, name)}; set stage1.{name}: {getattr(model, name)}")
    return ImportedStage1(model)


def stage2_from_class(factory: Callable[..., Any], kind: str, config: Stage2Config,
                      latent_channels: int, latent_size: int, num_classes: int = 0
                      ) -> nn.Module:
    """The stage-2 model `factory(config, latent_channels, latent_size)`, checked (the STAGE2
    adapter); conditional models are the registered kinds' (fftd, unet2d)."""
    if config.conditional:
        raise ModelInterfaceError(f"stage2.kind: {kind}: stage2.conditioning "
                                  f"{config.conditioning} is implemented by fftd and unet2d, "
                                  "not by models given by import path")
    model = _construct(factory, kind, "stage2.kind", (config, latent_channels, latent_size),
                       "ClassName(config: Stage2Config, latent_channels: int, latent_size: int)")
    if type(model).forward is nn.Module.forward:
        raise ModelInterfaceError(f"stage2.kind: {kind} lacks forward(); a stage-2 model "
                                  f"has {STAGE2_INTERFACE}")
    try:
        inspect.signature(model.forward).bind("z_t", "t")
    except TypeError:
        raise ModelInterfaceError(
            f"stage2.kind: {kind}.forward{inspect.signature(model.forward)} does not "
            f"take (z_t, t); a stage-2 model has {STAGE2_INTERFACE}") from None
    return model
