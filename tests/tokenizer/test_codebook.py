"""harness.tokenizer.codebook: codebooks regenerated from (seed, step), the selection of Eq. 14
on a g x g grid."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.tokenizer.codebook import (
    BLOCK,
    codebook_blocks,
    codebook_rows,
    from_cells,
    gather,
    select,
    to_cells,
)
from tests.models.meta import META
from tests.tokenizer.gaussian import SHAPE


@pytest.mark.parametrize("grid", [1, 2])
def test_selection_of_eq14_equals_a_brute_force_loop(grid: int) -> None:
    K = 2 * BLOCK + 37  # several generator blocks and a ragged end
    residual = torch.randn(3, *SHAPE, generator=torch.Generator().manual_seed(5))
    chosen, noise = select(residual, seed=7, step=3, K=K, grid=grid, chunk=BLOCK)
    book = torch.cat([rows for _, rows in codebook_blocks(7, 3, K, residual[0].numel())])
    cells = to_cells(residual, grid).double()
    book_cells = to_cells(book.reshape(K, *SHAPE), grid).double()
    for b in range(3):
        for j in range(grid * grid):
            scores = [float(book_cells[j, k] @ cells[j, b]) for k in range(K)]
            assert chosen[b, j] == int(np.argmax(scores))
    assert torch.equal(chosen, select(residual, 7, 3, K, grid, chunk=2 * BLOCK)[0])
    assert torch.equal(noise, gather(chosen, 7, 3, K, tuple(residual.shape)))


def test_codebooks_are_regenerated_from_seed_and_step() -> None:
    index = torch.tensor([[0, 1500, 17, 2047]])
    one = gather(index, seed=1, step=4, K=2048, shape=(1, 4, 4, 4))
    assert torch.equal(one, gather(index, 1, 4, 2048, (1, 4, 4, 4)))
    assert not torch.equal(one, gather(index, 1, 5, 2048, (1, 4, 4, 4)))
    assert not torch.equal(one, gather(index, 2, 4, 2048, (1, 4, 4, 4)))
    # cell (0, 1) of the 2x2 grid is taken from row 1500
    row = torch.cat([rows for _, rows in codebook_blocks(1, 4, 2048, 64)])
    torch.testing.assert_close(one[0, :, :2, 2:], row[1500].reshape(4, 4, 4)[:, :2, 2:])


def test_rows_are_those_of_the_whole_codebook_whatever_the_chunking() -> None:
    K = BLOCK + 100
    whole = torch.cat([rows for _, rows in codebook_blocks(3, 2, K, 8, chunk=2 * BLOCK)])
    assert whole.shape == (K, 8)
    assert torch.equal(whole, torch.cat([rows for _, rows in codebook_blocks(3, 2, K, 8)]))
    picks = torch.tensor([[K - 1, 0], [BLOCK, 5]])
    assert torch.equal(codebook_rows(3, 2, K, 8, picks), whole[picks])
    with pytest.raises(ValueError, match="multiple of"):
        next(codebook_blocks(3, 2, K, 8, chunk=BLOCK + 1))


@pytest.mark.parametrize("grid", [1, 2, 4])
def test_cells_are_the_grid_blocks_of_the_image(grid: int) -> None:
    x = torch.randn(3, *SHAPE, generator=torch.Generator().manual_seed(0))
    cells = to_cells(x, grid)
    side = SHAPE[1] // grid
    assert cells.shape == (grid * grid, 3, SHAPE[0] * side * side)
    last = grid * grid - 1  # the bottom-right cell
    assert torch.equal(cells[last, 1], x[1, :, -side:, -side:].reshape(-1))
    assert torch.equal(from_cells(cells, tuple(x.shape)), x)


def test_codebooks_are_drawn_on_the_cpu_and_moved_to_the_data() -> None:
    """Selection runs on the residual's device; gathered noise lands on the indices' device
    (which blocks to draw is read from the indices on the host)."""
    residual = torch.randn(3, *SHAPE, generator=torch.Generator().manual_seed(5))
    index, noise = select(residual.to(META), 7, 3, BLOCK + 5, grid=2)
    assert index.device == noise.device == META
    assert index.shape == (3, 4) and noise.shape == residual.shape
    chosen, eps_c = select(residual, 7, 3, BLOCK + 5, grid=2)
    assert torch.equal(gather(chosen, 7, 3, BLOCK + 5, tuple(residual.shape)), eps_c)
    assert codebook_rows(7, 3, BLOCK + 5, 8, chosen).device.type == "cpu"
