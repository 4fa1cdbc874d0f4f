"""Class conditioning of a denoiser (LDM section 3.3): a class embedding added to the time
embedding, or condition tokens tau_theta(y) that cross-attention reads (LDM Eq. 3).

Labels are integers in [0, num_classes); NULL_LABEL (-1) is "no label", the unconditional
model that label dropout trains and classifier-free guidance evaluates. Every conditional
part contributes exactly zero for the null label and starts at zero for the others (a zero
embedding table, a zero-initialised output projection), and is built without drawing from
torch's global generator (`built_aside`). So the other weights of a conditional model start
as those of the unconditional one, and a model trained with p_uncond = 1 is the unconditional
model, bit for bit, whatever label it is later given.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

NULL_LABEL = -1


@contextlib.contextmanager
def built_aside() -> Iterator[None]:
    """Build modules inside without moving torch's global CPU generator: the draws of the
    rest of the model (and of dropout later) stay those of the unconditional model."""
    with torch.random.fork_rng(devices=[]):
        yield


def null_labels(count: int, device: torch.device) -> torch.Tensor:
    return torch.full((count,), NULL_LABEL, dtype=torch.long, device=device)


class ClassEmbedding(nn.Module):
    """y -> an embedding vector, zero for NULL_LABEL; a table initialised to zero, so
    training starts from the unconditional model (as DiT's adaLN-Zero starts from identity)."""

    def __init__(self, num_classes: int, dim: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.table = nn.Embedding(num_classes + 1, dim, padding_idx=num_classes)
        nn.init.zeros_(self.table.weight)

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        return self.table(torch.where(labels < 0, self.num_classes, labels))


class ConditionTokens(nn.Module):
    """tau_theta of LDM Eq. 3 for class labels: a learned table of `tokens` vectors of width
    `dim` per class (the null label's tokens are never read: its cross-attention is off)."""

    def __init__(self, num_classes: int, tokens: int, dim: int) -> None:
        super().__init__()
        self.tokens, self.dim = tokens, dim
        self.table = nn.Embedding(num_classes, tokens * dim)

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        return self.table(labels.clamp(min=0)).view(len(labels), self.tokens, self.dim)


class CrossAttention(nn.Module):
    """LDM Eq. 3: softmax(Q K^T / sqrt(d)) V with Q from the feature tokens and K, V from
    tau_theta(y), added residually; its output projection starts at zero and the residual is
    masked to zero for NULL_LABEL rows."""

    def __init__(self, channels: int, context_dim: int, heads: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)
        self.attention = nn.MultiheadAttention(channels, heads, kdim=context_dim,
                                               vdim=context_dim, batch_first=True)
        nn.init.zeros_(self.attention.out_proj.weight)
        nn.init.zeros_(self.attention.out_proj.bias)

    def forward(self, tokens: torch.Tensor, context: torch.Tensor, labels: torch.Tensor
                ) -> torch.Tensor:
        attended = self.attention(self.norm(tokens), context, context, need_weights=False)[0]
        keep = (labels >= 0).to(attended.dtype)[:, None, None]
        return tokens + keep * attended


def check_conditioning(kind: str, conditioning: str, supported: tuple[str, ...],
                       num_classes: int) -> None:
    """ValueError unless the model kind implements this conditioning and there are labels."""
    if conditioning == "none":
        return
    if conditioning not in supported:
        raise ValueError(f"stage2.conditioning: {conditioning} is not implemented by "
                         f"stage2.kind {kind} (it supports: {', '.join(supported) or 'none'})")
    if num_classes < 1:
        raise ValueError(f"stage2.conditioning: {conditioning} needs class labels, but the "
                         "dataset has none (see `harness data show`)")
