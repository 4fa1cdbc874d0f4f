"""Per-step noise codebooks, regenerated from (seed, step) and never stored, and the
selection of seed 002 Eq. 14 (and the init projection of Eq. 15) on a g x g token grid.

Codebook i holds K standard-normal vectors of the data's shape (C, H, W). It is generated in
blocks of `BLOCK` rows, block b from a CPU `torch.Generator` seeded by (seed, i, b), so the
numbers do not depend on how the selection chunks K, on the device, or on the batch; rows
are generated on the CPU and moved to the device of the data they are matched against.
With a g x g grid each cell of the image picks its own row (section 4.3.4): a cell's token
is the row whose restriction to that cell best matches the cell's residual.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator

import torch

BLOCK = 1024  # rows generated per generator; part of the token format
INIT_STEP = -1  # step index of the init codebook (strategy 1, Eq. 15)


def block_seed(seed: int, step: int, block: int) -> int:
    """A 63-bit generator seed for one block of one step's codebook."""
    digest = hashlib.blake2b(f"gddcm:{seed}:{step}:{block}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def codebook_blocks(seed: int, step: int, K: int, dim: int, chunk: int = BLOCK
                    ) -> Iterator[tuple[int, torch.Tensor]]:
    """(first row, rows) of codebook `step`, `chunk` rows (a multiple of BLOCK) at a time."""
    if chunk % BLOCK:
        raise ValueError(f"chunk must be a multiple of {BLOCK}, got {chunk}")
    for start in range(0, K, chunk):
        rows = [torch.randn(min(BLOCK, K - b), dim, generator=torch.Generator().manual_seed(
            block_seed(seed, step, b // BLOCK))) for b in range(start, min(start + chunk, K),
                                                              BLOCK)]
        yield start, torch.cat(rows) if len(rows) > 1 else rows[0]


def codebook_rows(seed: int, step: int, K: int, dim: int, indices: torch.Tensor
                  ) -> torch.Tensor:
    """Rows `indices` (any shape) of codebook `step`, on the indices' device: only the blocks
    they fall in are made."""
    flat = indices.reshape(-1).cpu()  # which blocks to generate is decided on the host
    out = torch.empty(len(flat), dim)
    for block in flat.div(BLOCK, rounding_mode="floor").unique().tolist():
        generator = torch.Generator().manual_seed(block_seed(seed, step, block))
        rows = torch.randn(min(BLOCK, K - block * BLOCK), dim, generator=generator)
        hit = flat.div(BLOCK, rounding_mode="floor") == block
        out[hit] = rows[flat[hit] - block * BLOCK]
    return out.reshape(*indices.shape, dim).to(indices.device)


def to_cells(x: torch.Tensor, grid: int) -> torch.Tensor:
    """(B, C, H, W) -> (g*g, B, C * H/g * W/g): the data of each grid cell, cell-major."""
    B, C, H, W = x.shape
    cells = x.reshape(B, C, grid, H // grid, grid, W // grid).permute(2, 4, 0, 1, 3, 5)
    return cells.reshape(grid * grid, B, -1)


def from_cells(cells: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Inverse of `to_cells` for a (g*g, B, D_cell) tensor."""
    B, C, H, W = shape
    grid = round(cells.shape[0] ** 0.5)
    x = cells.reshape(grid, grid, B, C, H // grid, W // grid).permute(2, 3, 0, 4, 1, 5)
    return x.reshape(B, C, H, W)


def select(residual: torch.Tensor, seed: int, step: int, K: int, grid: int,
           chunk: int = 4 * BLOCK) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 14 per grid cell: argmax_k <E_step[k]|cell, residual|cell>.

    Returns the (B, g*g) indices and the chosen noise eps_c (the residual's shape), so that
    encoding generates each codebook once. The scores of a chunk of the codebook for the
    whole batch and every cell are one batched matrix product (g*g, B, D_cell) @
    (g*g, D_cell, chunk); ties go to the lower index.
    """
    B, device = residual.shape[0], residual.device
    cells = to_cells(residual.float(), grid)  # (G, B, Dc)
    dim = residual[0].numel()
    best = torch.full((grid * grid, B), -torch.inf, device=device)
    index = torch.zeros(grid * grid, B, dtype=torch.long, device=device)
    chosen = torch.zeros_like(cells)
    for start, rows in codebook_blocks(seed, step, K, dim, chunk):
        book = to_cells(rows.to(device).reshape(len(rows), *residual.shape[1:]), grid)
        scores = torch.bmm(cells, book.transpose(1, 2))  # (G, B, k)
        value, arg = scores.max(dim=2)
        better = value > best
        best = torch.where(better, value, best)
        index = torch.where(better, arg + start, index)
        picked = torch.gather(book, 1, arg[..., None].expand(-1, -1, book.shape[2]))
        chosen = torch.where(better[..., None], picked, chosen)
    return index.T.contiguous(), from_cells(chosen, tuple(residual.shape))


def gather(indices: torch.Tensor, seed: int, step: int, K: int, shape: tuple[int, ...]
           ) -> torch.Tensor:
    """The chosen noise eps_c of shape `shape` (on the indices' device) from (B, g*g) indices:
    cell j of image b is cell j of row indices[b, j] of codebook `step`."""
    B, G = indices.shape
    grid = round(G**0.5)
    dim = math.prod(shape[1:])
    rows = codebook_rows(seed, step, K, dim, indices.T.cpu())  # (G, B, dim): cell j's rows
    cells = to_cells(rows.reshape(G * B, *shape[1:]), grid).reshape(G, G, B, -1)
    own = torch.arange(G)
    # cell j of the rows picked for cell j, assembled on the CPU: only eps_c is moved
    return from_cells(cells[own, own], tuple(shape)).to(indices.device)
