"""Language identification with fastText lid.176 (the ``langid`` stage)."""

from spark_jobs.langid.identify import REASON_LANGUAGE, LanguageIdentifier, LanguageRule, prediction_window
from spark_jobs.langid.model import ModelSource, default_model_path, load_model
from spark_jobs.langid.stage import LangIdStage

__all__ = [
    "REASON_LANGUAGE",
    "LangIdStage",
    "LanguageIdentifier",
    "LanguageRule",
    "ModelSource",
    "default_model_path",
    "load_model",
    "prediction_window",
]
