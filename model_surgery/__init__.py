"""Grow, shrink and initialise OPT models: SOLAR depth up-scaling, LLaMA Pro identity growth, random presets."""

from model_surgery.checkpoint import load_pretrained, save
from model_surgery.init import init_random
from model_surgery.resize import resize

__all__ = ["init_random", "load_pretrained", "resize", "save"]
