"""Ingestion: every source the user names becomes rows of the annotated document schema (invalid rows included).

The driver plans (lists files, reads Parquet footers); executors read, each task streaming its units into Arrow
batches. ``hf://datasets/OWNER/NAME`` sources are read through the ``pyspark_huggingface`` data source and mapped
onto the same schema by the same record logic.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from slm_common.options import opt
from spark_jobs.batches import BatchFn, RowChain, release_memory
from spark_jobs.documents import annotated_schema, arrow_schema
from spark_jobs.ingest.plan import InputError, Plan, check_output, cut, plan_inputs
from spark_jobs.ingest.readers import (
    ID_STRING,
    MAX_DOC_BYTES,
    UNREADABLE,
    DocBuilder,
    ReadOptions,
    ReadUnit,
    read_unit,
)

__all__ = ["IngestOptions", "InputError", "Sources", "check_ingested", "ingest", "plan_sources"]


@dataclass
class IngestOptions:
    """How input rows become documents."""

    text_column: str = opt("text", "input column holding the document text")
    id_column: str = opt("id", "input column holding a document id (used unchanged as doc_id when present)")
    kind_column: str = opt("kind", "input column holding the document kind, 'text' or 'code' (default text)")
    code_extensions: str = opt(".py", "comma list of file extensions read from source-code directories")
    max_file_bytes: int = opt(
        1_000_000, "source-code files larger than this go to removed/ (invalid, too_large); --max-doc-bytes caps it"
    )
    max_doc_bytes: int = opt(
        MAX_DOC_BYTES,
        "documents larger than this (a JSONL line, a Parquet/dataset text value, a text file) go to removed/ "
        "(invalid, too_large), read in bounded chunks, never whole",
    )

    def validate(self) -> None:
        if self.max_file_bytes < 1:
            raise ValueError("--max-file-bytes must be >= 1")
        if self.max_doc_bytes < 1:
            raise ValueError("--max-doc-bytes must be >= 1")


@dataclass
class Sources:
    """The inputs as planned on the driver: file read units, Hub datasets, and what identifies their content."""

    uris: list[str]
    plan: Plan
    hf_uris: list[str]
    hf_revisions: list[str]

    @property
    def fingerprint(self) -> str:
        """Every input file's URI, size and modification time and every dataset's revision, hashed: any added,
        removed or rewritten input changes it."""
        blob = json.dumps([self.uris, self.plan.files, self.hf_revisions])
        return hashlib.sha256(blob.encode()).hexdigest()


def plan_sources(uris: list[str], opts: IngestOptions, output: str = "") -> Sources:
    """List the inputs (and read Parquet footers) on the driver; a missing or unreadable file fails here, and so
    does an ``output`` directory inside an input directory."""
    from spark_jobs.ingest.hf import hub_revision, is_hf_uri

    hf_uris = [u for u in uris if is_hf_uri(u)]
    file_inputs = [u for u in uris if not is_hf_uri(u)]
    if output:
        check_output(file_inputs, output)
    plan = plan_inputs(file_inputs, opts.code_extensions, opts.id_column, opts.text_column) if file_inputs else Plan()
    return Sources(list(uris), plan, hf_uris, [hub_revision(u) for u in hf_uris])


def ingest(
    spark: SparkSession,
    sources: Sources,
    opts: IngestOptions,
    steps: Sequence[BatchFn] = (),
    extra_fields: Sequence[T.StructField] = (),
    memo: str = "",
) -> tuple[DataFrame, dict[str, Any]]:
    """All input documents as one annotated DataFrame (lazy), plus facts about the inputs for the report.

    ``steps`` are row-local batch functions (a filter, language ID, a hash) run on each batch right after it is
    read, in the same Python worker (see :class:`~spark_jobs.batches.RowChain`); ``extra_fields`` are the columns
    they add beyond the annotated schema; ``memo``, when not empty, names the steps and their options, and lets a
    worker give a copy of a document it has seen the outputs of the first (``RowChain``'s ``memo``).
    """
    from spark_jobs.ingest.hf import read_hf_dataset

    plan = sources.plan
    hf_frames = [read_hf_dataset(spark, uri) for uri in sources.hf_uris]
    id_type = plan.id_type
    for uri, df in zip(sources.hf_uris, hf_frames, strict=True):
        if opts.text_column not in df.columns:
            raise InputError(f"{uri} has no text column {opts.text_column!r} (columns: {', '.join(df.columns)})")
        text_type = df.schema[opts.text_column].dataType
        if not isinstance(text_type, T.StringType | T.BinaryType | T.NullType):
            raise InputError(f"{uri}: text column {opts.text_column!r} holds {text_type.simpleString()}, not text")
        if opts.id_column in df.columns and not isinstance(
            df.schema[opts.id_column].dataType, T.IntegralType | T.FractionalType
        ):
            id_type = ID_STRING
    if not plan.units and not hf_frames:
        raise InputError(f"no readable input files in {', '.join(sources.uris)}")
    read_opts = ReadOptions(
        text_column=opts.text_column,
        id_column=opts.id_column,
        kind_column=opts.kind_column,
        id_type=id_type,
        max_file_bytes=opts.max_file_bytes,
        max_doc_bytes=opts.max_doc_bytes,
    )
    schema = T.StructType(annotated_schema(read_opts.spark_id_type()).fields + list(extra_fields))
    chain = RowChain(tuple(steps), arrow_schema(schema), memo)
    units = cut(plan.units, spark.sparkContext.defaultParallelism)
    parts = [_read_units(spark, units, read_opts, schema, chain)] if units else []
    parts += [df.mapInArrow(_records_to_docs(read_opts, chain), schema) for df in hf_frames]
    docs = parts[0]
    for part in parts[1:]:
        docs = docs.unionByName(part)
    info = {
        "sources": list(sources.uris),
        "read_units": len(units),
        "files": len({u.uri for u in plan.units}),
        "id_type": id_type,
        "skipped_files_by_extension": dict(plan.skipped),
    }
    return docs, info


def _read_units(
    spark: SparkSession,
    units: list[ReadUnit],
    opts: ReadOptions,
    schema: T.StructType,
    chain: RowChain | None = None,
    slices: int = 0,
) -> DataFrame:
    """The units read by ``slices`` tasks (0: 4 per core), in order, each task reading its units and passing every
    batch through ``chain`` (by default, none: the annotated rows as read).

    The tasks are a range of unit numbers, and the units a broadcast each Python worker loads once: a frame made from
    the units' rows would be a Python RDD, read by a second pool of Python workers (each started and each fed on
    every task) before the workers that read the files.
    """
    chain = chain or RowChain((), arrow_schema(schema))
    slices = max(1, min(len(units), slices or 4 * spark.sparkContext.defaultParallelism))
    shared = spark.sparkContext.broadcast(units)

    def read(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            for number in batch.column("id").to_pylist():
                yield from map(chain, read_unit(shared.value[number], opts))
        release_memory()

    return spark.range(0, len(units), 1, slices).mapInArrow(read, schema)


def _records_to_docs(opts: ReadOptions, chain: RowChain):
    """mapInArrow function mapping rows that carry ``_source``/``_position`` (the HF reader's) onto documents, then
    through ``chain``."""
    from spark_jobs.ingest.hf import POSITION_COLUMN, SOURCE_COLUMN

    def convert(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        out = DocBuilder(opts)
        for batch in batches:
            if not batch.num_rows:
                continue
            source = batch.column(SOURCE_COLUMN)[0].as_py()  # one dataset per frame: one source
            positions = iter(batch.column(POSITION_COLUMN).to_pylist())
            columns = [name for name in batch.schema.names if name not in (SOURCE_COLUMN, POSITION_COLUMN)]
            out.add_records(batch.select(columns), source, positions)
            yield chain(out.flush())

    return convert


def check_ingested(docs: DataFrame) -> None:
    """Fail with one line when ingestion's written copy shows an input that must stop the run.

    A file that broke while it was read (its :data:`~spark_jobs.ingest.readers.UNREADABLE` row): what is left of it
    cannot be told apart from what is lost. Two input rows sharing an id: every later step keys on ``doc_id``, so a
    unique document would be filed as a duplicate, or rows doubled. One aggregate over the ``doc_id`` and (almost
    all null) ``rule`` columns finds either; only then are the sources looked up.
    """
    broken = F.when(F.col("rule").startswith(UNREADABLE + ":"), 1)  # a number: strings would force a sort aggregate
    found = (
        docs.groupBy("doc_id")
        .agg(F.count(F.lit(1)).alias("rows"), F.max(broken).alias("broken"))
        .where((F.col("rows") > 1) | F.col("broken").isNotNull())
        .limit(1)
        .collect()
    )
    if not found:
        return
    doc_id = found[0]["doc_id"]
    rows = docs.where(F.col("doc_id") == doc_id).select("source", "rule").limit(2).collect()
    if found[0]["broken"]:
        raise InputError(f"cannot read {rows[0]['source']}: {rows[0]['rule'].split(': ', 1)[1]}")
    sources = [r["source"] for r in rows]
    raise InputError(
        f"duplicate input id {doc_id!r} in {' and '.join(sources)}; ids must be unique "
        "(--id-column '' gives every document a generated id instead)"
    )
