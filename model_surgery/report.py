"""The before/after table printed by the CLI, so a user sees what a surgery did to size without opening files."""

from __future__ import annotations

from collections.abc import Sequence

from transformers import PreTrainedModel

Row = tuple[str, int, int]


def row(label: str, model: PreTrainedModel) -> Row:
    """``(label, layers, parameters)``; parameters count the tied LM head once, as the published sizes do."""
    return label, model.config.num_hidden_layers, model.num_parameters()


def format_table(rows: Sequence[Row]) -> str:
    """A fixed-width table with exact parameter counts and a rounded millions column."""
    width = max(len("model"), *(len(label) for label, _, _ in rows))
    lines = [f"{'model':<{width}}  {'layers':>6}  {'parameters':>15}  {'millions':>9}"]
    lines += [f"{label:<{width}}  {layers:>6}  {params:>15,}  {params / 1e6:>8.1f}M" for label, layers, params in rows]
    return "\n".join(lines)
