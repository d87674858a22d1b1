"""Model presets built locally from published numbers, so random init never needs the hub."""

from __future__ import annotations

from typing import Any

from transformers import OPTConfig

from model_surgery.checks import check_overrides

PRESETS: dict[str, dict[str, Any]] = {
    # facebook/opt-125m's config.json numbers.
    "opt-125m": dict(
        num_hidden_layers=12,
        hidden_size=768,
        ffn_dim=3072,
        num_attention_heads=12,
        vocab_size=50272,
        max_position_embeddings=2048,
        word_embed_proj_dim=768,
        do_layer_norm_before=True,
        activation_function="relu",
        dropout=0.1,
        attention_dropout=0.0,
        layerdrop=0.0,
        init_std=0.02,
        pad_token_id=1,
        bos_token_id=2,
        eos_token_id=2,
        tie_word_embeddings=True,
    ),
}


def make_config(preset: str = "opt-125m", **overrides: Any) -> OPTConfig:
    """An ``OPTConfig`` from a preset name with any field overridden (``None`` values are ignored).

    ``hidden_size`` overrides also move ``word_embed_proj_dim`` unless it is given, because OPT only projects
    embeddings when the two differ (opt-350m), which is not what a user shrinking the width means. Overrides must
    be OPT config fields with sizes within ``checks.LIMITS`` (``checks.Refused`` otherwise).
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; known: {', '.join(sorted(PRESETS))}")
    fields = dict(PRESETS[preset])
    given = {k: v for k, v in overrides.items() if v is not None}
    check_overrides(given)
    if "hidden_size" in given and "word_embed_proj_dim" not in given:
        given["word_embed_proj_dim"] = given["hidden_size"]
    fields.update(given)
    return OPTConfig(**fields)
