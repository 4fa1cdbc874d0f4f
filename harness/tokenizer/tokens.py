"""The token file: everything `decode` needs besides the model, in one .npz.

Arrays: `indices` (B, steps, g*g) int32, `init_indices` (B, g*g) for init strategy 1,
`init_reference` (B, C, H, W) float32 for strategy 3 (a random data draw, not information
about the image). `meta` is a JSON string: format version, the full GDDCMConfig, its hash,
the model reference (stage-2 cache entry path), the data shape and the counts.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import HarnessError

FORMAT = "gddcm-tokens-3"  # 2: default T_s by noise level; 3: the model's process by name


@dataclass
class TokenFile:
    indices: np.ndarray
    meta: dict[str, Any]
    init_indices: np.ndarray | None = None
    init_reference: np.ndarray | None = None

    @property
    def tokens_per_image(self) -> int:
        per_image = self.indices[0].size if len(self.indices) else 0
        return per_image + (self.init_indices[0].size if self.init_indices is not None else 0)

    @property
    def bits_per_image(self) -> float:
        """Tokens (every grid cell, the init token included) times log2 K."""
        return self.tokens_per_image * math.log2(self.meta["config"]["K"])

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        arrays: dict[str, np.ndarray] = {"indices": self.indices,
                                         "meta": np.array(json.dumps(self.meta, sort_keys=True))}
        if self.init_indices is not None:
            arrays["init_indices"] = self.init_indices
        if self.init_reference is not None:
            arrays["init_reference"] = self.init_reference
        with path.open("wb") as handle:
            np.savez_compressed(handle, **arrays)
        return path

    @classmethod
    def load(cls, path: str | Path) -> TokenFile:
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                optional = {key: data[key] if key in data.files else None
                            for key in ("init_indices", "init_reference")}
                indices = data["indices"]
        except (OSError, KeyError, ValueError) as error:
            raise HarnessError(f"{path}: not a gDDCM token file ({error})") from None
        if meta.get("format") != FORMAT:
            raise HarnessError(f"{path}: token format {meta.get('format')!r}, expected {FORMAT}")
        return cls(indices, meta, **optional)
