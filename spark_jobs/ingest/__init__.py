"""Ingestion: every source the user names becomes rows of the annotated document schema (invalid rows included).

The driver plans (lists files, reads Parquet footers); executors read, each task streaming its units into Arrow
batches. ``hf://datasets/OWNER/NAME`` sources are read through the ``pyspark_huggingface`` data source and mapped
onto the same schema by the same record logic.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from spark_jobs.batches import BatchFn, RowChain
from spark_jobs.documents import annotated_schema, arrow_schema
from spark_jobs.ingest.plan import InputError, Plan, plan_inputs
from spark_jobs.ingest.readers import ID_STRING, DocBuilder, ReadOptions, ReadUnit, read_unit

__all__ = ["InputError", "ingest"]


def ingest(
    spark: SparkSession, cfg: Any, steps: Sequence[BatchFn] = (), extra_fields: Sequence[T.StructField] = ()
) -> tuple[DataFrame, dict[str, Any]]:
    """All input documents as one annotated DataFrame (lazy), plus facts about the inputs for the report.

    ``steps`` are row-local batch functions (a filter, language ID, a hash) run on each batch right after it is
    read, in the same Python worker (see :class:`~spark_jobs.batches.RowChain`); ``extra_fields`` are the columns
    they add beyond the annotated schema.
    """
    from spark_jobs.ingest.hf import is_hf_uri, read_hf_dataset

    hf_uris = [u for u in cfg.input if is_hf_uri(u)]
    file_inputs = [u for u in cfg.input if not is_hf_uri(u)]
    plan = plan_inputs(file_inputs, cfg.code_extensions, cfg.id_column, cfg.text_column) if file_inputs else Plan()
    hf_frames = [read_hf_dataset(spark, uri) for uri in hf_uris]
    for df in hf_frames:
        if cfg.text_column not in df.columns:
            raise InputError(f"dataset has no text column {cfg.text_column!r} (columns: {', '.join(df.columns)})")
        if cfg.id_column in df.columns and not isinstance(df.schema[cfg.id_column].dataType, T.IntegralType):
            plan.id_type = ID_STRING
    if not plan.units and not hf_frames:
        raise InputError(f"no readable input files in {', '.join(cfg.input)}")
    opts = ReadOptions(
        text_column=cfg.text_column,
        id_column=cfg.id_column,
        kind_column=cfg.kind_column,
        id_type=plan.id_type,
        max_file_bytes=cfg.max_file_bytes,
    )
    schema = T.StructType(annotated_schema(opts.spark_id_type()).fields + list(extra_fields))
    chain = RowChain(tuple(steps), arrow_schema(schema))
    parts = [_read_units(spark, plan.units, opts, schema, chain)] if plan.units else []
    parts += [df.mapInArrow(_records_to_docs(opts, chain), schema) for df in hf_frames]
    docs = parts[0]
    for part in parts[1:]:
        docs = docs.unionByName(part)
    info = {
        "sources": list(cfg.input),
        "read_units": len(plan.units),
        "files": len({u.uri for u in plan.units}),
        "id_type": plan.id_type,
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
    """A DataFrame of the units (metadata rows), spread over ``slices`` tasks (0: 4 per core), each reading its units
    and passing every batch through ``chain`` (by default, none: the annotated rows as read)."""
    chain = chain or RowChain((), arrow_schema(schema))
    slices = max(1, min(len(units), slices or 4 * spark.sparkContext.defaultParallelism))
    rdd = spark.sparkContext.parallelize([u.to_row() for u in units], slices)
    unit_schema = T.StructType(
        [T.StructField(k, T.LongType() if isinstance(v, int) else T.StringType()) for k, v in units[0].to_row().items()]
    )
    unit_df = spark.createDataFrame(rdd, unit_schema)

    def read(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            for row in batch.to_pylist():
                yield from map(chain, read_unit(ReadUnit(**row), opts))

    return unit_df.mapInArrow(read, schema)


def _records_to_docs(opts: ReadOptions, chain: RowChain):
    """mapInArrow function mapping rows that carry ``_source``/``_position`` (the HF reader's) onto documents, then
    through ``chain``."""

    def convert(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        out = DocBuilder(opts)
        for batch in batches:
            for record in batch.to_pylist():
                source, position = record.pop("_source"), record.pop("_position")
                out.add_record(record, source, position)
            if len(out):
                yield chain(out.flush())

    return convert
