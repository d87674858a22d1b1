"""The ``classifier`` stage (opt-in): a fastText classifier scores the text documents; below a threshold, removed.

Any supervised fastText model file works (``--classifier-model``: a quality classifier in the manner of the DCLM or
FineWeb-Edu fastText filters, or any other): the score of a document is the probability the model gives
``--classifier-label``, and a document scoring below ``--classifier-threshold`` is removed with reason
``classifier``. The score is kept as the document column :data:`SCORE_COLUMN` (in ``cleaned/`` and ``removed/`` of
runs with this stage; null for code, which is exempt as in language ID, and for documents removed earlier).

The model is shipped and loaded as language ID's is (:class:`~spark_jobs.langid.model.ModelSource`: once per Python
worker, reused by every batch); fastText reads each text with newlines as spaces, as it reads its training lines.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from slm_common.options import opt
from spark_jobs import storage
from spark_jobs.batches import ColumnValues
from spark_jobs.documents import KIND_CODE
from spark_jobs.langid.identify import prediction_window
from spark_jobs.langid.model import ModelSource
from spark_jobs.stage import RowStage, StageView

REASON_CLASSIFIER = "classifier"
SCORE_COLUMN = "classifier_score"
SCORE_FIELD = T.StructField(SCORE_COLUMN, T.DoubleType(), True)
QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


@dataclass
class ClassifierOptions:
    classifier_model: str = opt(
        "", "fastText classifier file (.bin/.ftz) for the classifier stage (required by it)", files=True
    )
    classifier_label: str = opt("__label__hq", "the label whose probability is a document's score")
    classifier_threshold: float = opt(0.5, "text documents scoring below this are removed (reason classifier)")

    def validate(self) -> None:
        if not self.classifier_model:
            raise ValueError("the classifier stage needs --classifier-model (a fastText model file)")
        if not storage.exists(self.classifier_model):
            raise ValueError(f"--classifier-model {self.classifier_model}: no such file")
        if not self.classifier_label.strip():
            raise ValueError("--classifier-label must not be empty")
        if not 0 <= self.classifier_threshold <= 1:
            raise ValueError("--classifier-threshold must be within [0, 1]")


def label_score(model: Any, text: str, label: str) -> float:
    """The probability ``model`` gives ``label`` for ``text`` (every label asked for, with no threshold, so none is
    cut off), clipped to 1 (fastText can return 1.00001); 0 when the model has no such label."""
    labels, scores = model.predict(prediction_window(text, 0, 1), k=-1, threshold=-1.0, on_unicode_error="replace")
    return next((min(float(s), 1.0) for name, s in zip(labels, scores, strict=True) if name == label), 0.0)


@dataclass(frozen=True)
class Classifier:
    """Batch function: :data:`SCORE_COLUMN` and ``reason``/``rule`` for the text rows; code rows keep null."""

    label: str
    threshold: float
    model: ModelSource

    def scores(self, texts: list[str | None]) -> list[float]:
        """The score of each text, with the model loaded once for all of them (and once per worker process)."""
        model = self.model.load()
        return [label_score(model, text or "", self.label) for text in texts]

    def __call__(self, batch: pa.RecordBatch) -> Mapping[str, ColumnValues]:
        prose = pc.invert(pc.fill_null(pc.equal(batch.column("kind"), KIND_CODE), False))
        positions = pc.indices_nonzero(prose).to_pylist()
        scores: list[float | None] = [None] * batch.num_rows
        rules: list[str | None] = [None] * batch.num_rows
        if positions:
            for position, score in zip(
                positions, self.scores(batch.column("text").filter(prose).to_pylist()), strict=True
            ):
                scores[position] = score
                if score < self.threshold:
                    rules[position] = f"{REASON_CLASSIFIER}: {self.label} score={score:.4g} < {self.threshold}"
        return {
            SCORE_COLUMN: scores,
            "reason": [REASON_CLASSIFIER if rule else None for rule in rules],
            "rule": rules,
        }


def check_model(source: ModelSource, label: str) -> None:
    """On the driver, before any Spark job: the file is a fastText model that knows ``label`` (``ValueError``
    otherwise, a one-line error), so a wrong file or label does not remove every document."""
    try:
        labels, _ = source.load().predict("", k=-1, threshold=-1.0)  # every label, however improbable
    except ValueError as err:
        raise ValueError(f"--classifier-model {source.resolve()}: not a fastText model ({err})") from None
    if label not in labels:
        raise ValueError(f"--classifier-label {label}: not a label of the model (its labels: {', '.join(labels)})")


class ClassifierStage(RowStage):
    """Stage ``classifier``: a fastText classifier's score kept per text document; below the threshold, removed."""

    name = "classifier"
    reasons = (REASON_CLASSIFIER,)
    Options = ClassifierOptions
    doc_fields = (SCORE_FIELD,)

    def batch_fn(self, opts: ClassifierOptions, spark: SparkSession) -> Classifier:
        source = ModelSource.for_spark(spark, opts.classifier_model)
        check_model(source, opts.classifier_label)
        return Classifier(opts.classifier_label, opts.classifier_threshold, source)

    def summary(self, view: StageView, opts: ClassifierOptions) -> dict[str, Any]:
        """How the scores of the text documents the stage saw are spread (approximate quantiles), and its setting."""
        scored = view.docs.where(F.col(SCORE_COLUMN).isNotNull())
        row = scored.agg(
            F.count("*").alias("n"),
            F.mean(SCORE_COLUMN).alias("mean"),
            F.percentile_approx(SCORE_COLUMN, list(QUANTILES)).alias("q"),
        ).first()
        quantiles = dict(zip((f"p{round(q * 100)}" for q in QUANTILES), row["q"] or (), strict=False))
        return {
            "model": opts.classifier_model,
            "label": opts.classifier_label,
            "threshold": opts.classifier_threshold,
            "scored_docs": row["n"],
            "mean_score": None if row["mean"] is None else round(row["mean"], 4),
            "score_quantiles": {k: round(v, 4) for k, v in quantiles.items()},
        }
