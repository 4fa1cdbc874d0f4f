"""Vector quantizer with an EMA codebook and dead-code restarts (seed 000 section 2.1)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

EPSILON = 1e-5  # Laplace smoothing of the EMA cluster sizes (van den Oord et al. 2017, App. A.1)
CHUNK = 1 << 24  # distance-matrix entries per chunk: bounds memory at K = 16384


@dataclass
class QuantizerOutput:
    z_q: torch.Tensor  # straight-through: forward value z_q, gradient of z_e
    indices: torch.Tensor  # (b, h, w) code of every latent position
    commitment: torch.Tensor  # E||z_e - sg(z_q)||^2, the term beta weighs (VQ-VAE Eq. 3)
    vq_loss: torch.Tensor  # L_vq = E||z_e - z_q||^2 (seed 000 section 2.1), a number to log
    perplexity: torch.Tensor  # exp(entropy of the batch's code histogram)
    usage: torch.Tensor  # fraction of the K codes the batch uses


def code_statistics(indices: torch.Tensor, K: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(perplexity, usage) of a set of code indices: exp(-sum p log p) and #used / K."""
    counts = torch.bincount(indices.flatten(), minlength=K).float()
    p = counts / counts.sum()
    entropy = -(p[p > 0] * p[p > 0].log()).sum()
    return entropy.exp(), (counts > 0).float().mean()


def straight_through(z_e: torch.Tensor, z_q: torch.Tensor) -> torch.Tensor:
    """Forward value z_q, gradient of z_e (VQ-VAE section 3.1)."""
    return z_e + (z_q - z_e).detach()


class VectorQuantizerEMA(nn.Module):
    """z_q = e_k, k = argmin_j ||z_e - e_j||^2 over a codebook of K vectors of dim D.

    The codebook is not trained by gradients but by exponential moving averages of the
    cluster sizes N_i and the sums m_i of the vectors assigned to each code
    (van den Oord et al. 2017, App. A.1, Eqs. 6-8):
        N_i <- gamma N_i + (1 - gamma) n_i,  m_i <- gamma m_i + (1 - gamma) sum_j z_ij,
        e_i = m_i / N_i  (N_i Laplace-smoothed).
    The first training batch initializes the codebook with random encoder outputs, each code
    counted at the fair share n / K (n vectors per batch). Dead-code restart (Dhariwal et
    al. 2020, Jukebox section 2.4): a code whose N_i falls below `dead_code_threshold` times
    the fair share is re-initialized to a random encoder output of the current batch.
    """

    def __init__(self, K: int, dim: int, decay: float = 0.99, dead_code_threshold: float = 0.1
                 ) -> None:
        super().__init__()
        self.K, self.dim, self.decay = K, dim, decay
        self.dead_code_threshold = dead_code_threshold
        self.register_buffer("embedding", torch.randn(K, dim))
        self.register_buffer("cluster_size", torch.zeros(K))
        self.register_buffer("embed_sum", self.embedding.clone())
        self.register_buffer("restarts", torch.zeros((), dtype=torch.long))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))
        self._initialized_on_host: bool | None = None  # the buffer, read once per load

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._initialized_on_host = None

    def _is_initialized(self) -> bool:
        """The `initialized` buffer, read from the device once, not at every step."""
        if self._initialized_on_host is None:
            self._initialized_on_host = bool(self.initialized)
        return self._initialized_on_host

    def nearest(self, flat: torch.Tensor) -> torch.Tensor:
        """argmin_j ||z - e_j||^2 = argmin_j (||e_j||^2 - 2 z.e_j), in chunks of rows."""
        e_sq = self.embedding.pow(2).sum(1)
        rows = max(1, CHUNK // self.K)
        return torch.cat([(e_sq - 2 * part @ self.embedding.t()).argmin(1)
                          for part in flat.split(rows)])

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Codes (b, h, w) -> latents (b, D, h, w)."""
        return self.embedding[indices].permute(0, 3, 1, 2).contiguous()

    def quantize(self, z_e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(z_q (b, D, h, w) in z_e's dtype, the (b*h*w,) codes): no statistics, no update."""
        b, d, h, w = z_e.shape
        indices = self.nearest(self._flat(z_e))
        z_q = self.embedding[indices].view(b, h, w, d).permute(0, 3, 1, 2).to(z_e.dtype)
        return z_q, indices

    def forward(self, z_e: torch.Tensor) -> QuantizerOutput:
        b, _, h, w = z_e.shape
        z_q, indices = self.quantize(z_e)
        squared = (z_e - z_q.detach()).pow(2).sum(1).mean()
        if self.training:
            self._ema_update(self._flat(z_e), indices)
        perplexity, usage = code_statistics(indices, self.K)
        return QuantizerOutput(straight_through(z_e, z_q), indices.view(b, h, w), squared,
                               squared.detach(), perplexity, usage)

    @staticmethod
    def _flat(z_e: torch.Tensor) -> torch.Tensor:
        """(b, D, h, w) -> (b*h*w, D) float32, detached."""
        return z_e.detach().permute(0, 2, 3, 1).reshape(-1, z_e.shape[1]).float()

    @torch.no_grad()
    def _ema_update(self, flat: torch.Tensor, indices: torch.Tensor) -> None:
        if not self._is_initialized():
            self._reset(torch.arange(self.K, device=flat.device), flat)
            self.initialized.fill_(True)
            self._initialized_on_host = True
            return
        counts = torch.bincount(indices, minlength=self.K).to(flat.dtype)
        sums = torch.zeros_like(self.embed_sum).index_add_(0, indices, flat)
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.embed_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        total = self.cluster_size.sum()
        smoothed = (self.cluster_size + EPSILON) / (total + self.K * EPSILON) * total
        self.embedding.copy_(self.embed_sum / smoothed.clamp_min(EPSILON)[:, None])
        fair_share = len(flat) / self.K
        dead = (self.cluster_size < self.dead_code_threshold * fair_share).nonzero().flatten()
        if len(dead):
            self._reset(dead, flat)
            self.restarts += len(dead)

    @torch.no_grad()
    def _reset(self, codes: torch.Tensor, flat: torch.Tensor) -> None:
        """Set `codes` to random vectors of the batch, each counted at the fair share."""
        fair_share = len(flat) / self.K
        picks = flat[torch.randint(len(flat), (len(codes),), device=flat.device)]
        self.embedding[codes] = picks
        self.cluster_size[codes] = fair_share
        self.embed_sum[codes] = picks * fair_share
