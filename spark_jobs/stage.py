"""The stage contract: what every step of the pipeline declares, and the two kinds of step there are.

A stage declares its ``name``, the removal ``reasons`` it gives, its ``Options`` (a small dataclass of
:func:`~slm_common.options.opt` fields living next to the stage; the pipeline's flags, YAML keys and cache keys
come from it; a field marked ``run_wide=True`` takes the run-wide option of that name, such as ``seed``). Options
are checked by ``Options.validate`` before any Spark work.

* A :class:`RowStage` decides each document alone, as a plain-Python function over an Arrow batch (no Spark in
  its logic). The runner fuses consecutive row stages into ingestion's single pass. Besides ``reason``/``rule``,
  its batch function may return ``text`` (rewritten for the stages after it and the outputs; the report's
  character counts stay those of the input), its ``row_fields`` (kept in the fused pass's copy, not in
  ``cleaned/``, for its :meth:`~Stage.summary` to aggregate) and its ``doc_fields`` (document columns it adds: in
  ``cleaned/`` and ``removed/`` after the standard ones, only in runs that include the stage).
* A :class:`CorpusStage` needs the whole corpus at once (deduplication, packing). It gets a DataFrame of the kept
  documents and returns its removals (``doc_id``, ``reason``, ``rule``, ``duplicate_of``), or writes artifacts
  into a directory of its own under the output and returns no removals (``artifacts`` names that directory).

Statistics come from the runner, the same way for every stage (documents and characters by reason and rule, from
the removals); :meth:`Stage.summary` adds what only the stage knows, from a :class:`StageView`.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from spark_jobs.batches import BatchFn


@dataclass(frozen=True)
class NoOptions:
    """Options of a stage that has none."""

    def validate(self) -> None:
        """Raise ``ValueError`` naming the flag when an option cannot work."""


@dataclass
class StageView:
    """What a stage's :meth:`~Stage.summary` may read, all computed or written already.

    ``counts``: :func:`~spark_jobs.batches.group_counts` rows of the documents the stage saw, removals by later
    stages counted as kept; ``removals``: a corpus stage's written removals; ``docs``: a corpus stage's input
    documents, or for a row stage the fused pass's annotated copy of all documents (with its ``row_fields``);
    ``directory``: where its output lies; ``stats``: what its :meth:`CorpusStage.run` measured on the way (kept in
    the stage's marker, so a reused stage reports them too).
    """

    counts: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    removals: DataFrame | None = None
    docs: DataFrame | None = None
    directory: str = ""
    stats: dict[str, Any] = dataclasses.field(default_factory=dict)


class Stage(ABC):
    name: ClassVar[str]
    reasons: ClassVar[tuple[str, ...]] = ()
    Options: ClassVar[type] = NoOptions

    def summary(self, view: StageView, opts: Any) -> dict[str, Any]:
        """Report entries only this stage can give (the runner adds the counts)."""
        return {}

    def prepare(self, opts: Any) -> None:  # noqa: B027 (a hook: most stages have nothing to prepare)
        """Start, in the background, work that depends only on the options (loading a tokenizer): the runner calls
        this when the run begins, so the work overlaps the stages before this one. Must return at once; a failure
        must surface only when the stage runs (a reused output needs none of it)."""


class RowStage(Stage):
    """Decides each document alone: runs inside ingestion's pass, fused with the other row stages."""

    row_fields: ClassVar[tuple[T.StructField, ...]] = ()
    """Columns the batch function fills besides the document's and the annotations (a count per document)."""
    rewrites_text: ClassVar[bool] = False
    """Whether the batch function returns a new ``text`` (a redaction): ingestion's pass then runs it on every copy
    of a document instead of reusing the outputs of the first (:class:`~spark_jobs.batches.RowChain`)."""
    doc_fields: ClassVar[tuple[T.StructField, ...]] = ()
    """Columns the batch function fills that become document columns (a classifier's score), nullable: null for
    the documents the stage did not see (removed earlier) or does not judge. A run without the stage lacks them, so
    the default outputs' schema stays the standard one."""

    @abstractmethod
    def batch_fn(self, opts: Any, spark: SparkSession) -> BatchFn:
        """A picklable ``fn(batch) -> {column: values}`` giving ``reason``/``rule`` (and any columns it fills);
        ``spark`` is there to ship files (a model) to the executors."""


@dataclass(frozen=True)
class CorpusResult:
    """A corpus stage's output: its removals (lazy; ``None`` for an artifact stage) and facts measured on the way."""

    removals: DataFrame | None = None
    stats: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class RowPrep:
    """The row-local part of a corpus stage (exact dedup's hash, near dedup's signatures): the runner computes it in
    ingestion's pass, where the text is already in Python, into ``fields`` of the fused pass's copy. A copy reused
    from a run without the stage lacks them, so the stage must compute them itself when its input has none."""

    fn: BatchFn
    fields: tuple[T.StructField, ...]


class CorpusStage(Stage):
    """Decides from all kept documents at once, or writes artifacts from them."""

    artifacts: ClassVar[str | None] = None
    """For a stage that writes files instead of removing documents: its directory under the output (``packed``).
    It runs on the cleaned corpus, after every removing stage."""

    def row_prep(self, opts: Any) -> RowPrep | None:
        """This stage's row-local part, if it has one."""
        return None

    @abstractmethod
    def run(self, docs: DataFrame, opts: Any, directory: str) -> CorpusResult:
        """Removals among ``docs`` (the document columns, plus the :meth:`row_prep` fields when computed), or artifacts written
        under ``directory``. ``directory`` is also the place for scratch files that must survive the run."""
