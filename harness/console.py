"""Plain-text tables for the terminal."""

from __future__ import annotations

from collections.abc import Sequence


def format_cell(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def format_table(header: Sequence[object], rows: Sequence[Sequence[object]],
                 rule: bool = False) -> str:
    """Left-aligned columns two spaces apart; `rule` underlines the header with dashes."""
    cells = [[format_cell(c) for c in row] for row in [header, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    if rule:
        cells.insert(1, ["-" * width for width in widths])
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
                     for row in cells)
