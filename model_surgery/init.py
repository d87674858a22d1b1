"""Random initialisation of an OPT model from a preset, built locally so it never needs the hub."""

from __future__ import annotations

from typing import Any

import torch
from transformers import OPTForCausalLM

from model_surgery.presets import make_config


def init_random(
    preset: str = "opt-125m", seed: int = 0, dtype: torch.dtype = torch.float32, **overrides: Any
) -> OPTForCausalLM:
    """A freshly initialised ``OPTForCausalLM`` from ``preset`` with config fields in ``overrides`` replaced.

    The seed is applied inside a forked RNG so that the same seed always gives the same weights without
    disturbing the caller's random stream. The model is returned in eval mode, like ``from_pretrained`` returns
    one, so both ways of starting a model behave the same until a trainer calls ``.train()``.
    """
    config = make_config(preset, **overrides)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = OPTForCausalLM(config)
    return model.to(dtype).eval()
