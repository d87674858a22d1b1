"""Packing token ids into fixed-length sequences and writing them as Parquet shards: plain Python, no Spark.

Kept apart from the Spark glue so the part that decides what the model trains on is unit-tested directly, and so
memory is visibly bounded: the packer holds less than one sequence between batches, the writer at most one row
group plus one batch.

Document framing (OPT style): every document becomes ``[bos] + ids + [eos]``. OPT's tokenizer prepends ``</s>``
(its BOS) to every input, so a packed document starts the way a prompt starts at inference, and the trailing EOS
teaches the model where documents end. With OPT's conventions BOS = EOS = ``</s>``, so documents are separated by
``</s></s>``. Sequences are cut at exactly ``seq_len`` tokens regardless of document boundaries (no padding);
the partial sequence left at the end of a shard is dropped and counted.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from types import TracebackType

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

SEQUENCE_SCHEMA = pa.schema([pa.field("input_ids", pa.list_(pa.int32()))])
"""The packed Parquet schema: one column ``input_ids``, list<int32>, exactly ``seq_len`` per row."""

ROW_GROUP_BYTES = 4 << 20
"""Target row-group size: a reader streams a shard one row group at a time, so a few MB keeps readers lean."""


def rows_per_group(seq_len: int) -> int:
    """Sequences per row group so that a group holds about :data:`ROW_GROUP_BYTES` of int32 ids."""
    return max(1, ROW_GROUP_BYTES // (4 * seq_len))


def as_list_array(docs: pa.Array | Sequence[Sequence[int]]) -> pa.Array:
    """Documents' token ids as an Arrow list<int32> array (returned as is when it already is an Arrow array).

    From Python lists, one numpy conversion per document and one concatenation beat ``pa.array`` on the nested lists
    by about 20 ns per token: a few percent of tokenizing, paid on every token of the corpus.
    """
    if isinstance(docs, pa.Array):
        return docs
    arrays = [np.asarray(ids, dtype=np.int32) for ids in docs]
    offsets = np.zeros(len(arrays) + 1, dtype=np.int32)
    np.cumsum([len(ids) for ids in arrays], out=offsets[1:])
    values = np.concatenate(arrays) if arrays else np.empty(0, dtype=np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values))


class Packer:
    """Frames documents as ``[bos] + ids + [eos]`` and cuts the running stream into ``seq_len``-token sequences.

    The tokens past the last full sequence are carried to the next :meth:`add`, so the output does not depend on how
    the documents were split into batches; after the last batch they are the shard's dropped tail
    (:attr:`remainder`). Work is vectorized over the batch (numpy over the Arrow buffers): packing costs a few
    nanoseconds per token, next to microseconds for tokenizing it.
    """

    def __init__(self, seq_len: int, bos_id: int, eos_id: int) -> None:
        if seq_len < 1:
            raise ValueError("seq_len must be >= 1")
        self.seq_len = seq_len
        self.bos_id = bos_id
        self.eos_id = eos_id
        self._rest = np.empty(0, dtype=np.int32)

    def add(self, docs: pa.Array | Sequence[Sequence[int]]) -> np.ndarray:
        """Append a batch of documents, an Arrow list<int32> array or id lists; return the completed sequences.

        The result has shape ``(k, seq_len)``, int32, ``k >= 0``.
        """
        docs = as_list_array(docs)
        ids = docs.flatten().to_numpy().astype(np.int32, copy=False)
        sizes = pc.list_value_length(docs).to_numpy(zero_copy_only=False).astype(np.int64) + 2
        ends = np.cumsum(sizes)
        framed = np.empty(len(ids) + 2 * len(docs), dtype=np.int32)
        framed[ends - sizes] = self.bos_id
        framed[ends - 1] = self.eos_id
        is_id = np.ones(len(framed), dtype=bool)
        is_id[ends - sizes] = False
        is_id[ends - 1] = False
        framed[is_id] = ids
        stream = np.concatenate((self._rest, framed))
        full = len(stream) // self.seq_len * self.seq_len
        self._rest = stream[full:].copy()  # a copy, so the batch-sized stream can be freed
        return stream[:full].reshape(-1, self.seq_len)

    @property
    def remainder(self) -> np.ndarray:
        """Tokens not yet in a full sequence (fewer than ``seq_len``)."""
        return self._rest


class ShardWriter:
    """Writes packed sequences to one Parquet shard in fixed row groups of :func:`rows_per_group` sequences.

    Rows are buffered until a whole group is there, so the file layout depends only on the sequences, never on the
    batches they arrived in (byte-identical reruns). Ids are stored plain and zstd-compressed, without Parquet's
    dictionary encoding: with a 50k-token vocabulary the dictionary was both slower to write and larger than zstd
    alone (docs/benchmarks.md). The file is written under a temporary name
    and renamed when closed, so a failed or retried Spark task never leaves a half-written shard under the final
    name. Use it as a context manager: an exception deletes the temporary file.
    """

    def __init__(self, fs: pafs.FileSystem, path: str, seq_len: int) -> None:
        self.fs = fs
        self.path = path
        self.seq_len = seq_len
        self.sequences = 0
        self.max_token_id: int | None = None
        """The largest id written (None before the first row): what a model's vocabulary must cover."""
        self._group = rows_per_group(seq_len)
        self._pending: list[np.ndarray] = []
        self._pending_rows = 0
        self._tmp = f"{path}.tmp-{uuid.uuid4().hex}"
        self._writer = pq.ParquetWriter(
            self._tmp, SEQUENCE_SCHEMA, filesystem=fs, compression="zstd", use_dictionary=False
        )

    def write(self, sequences: np.ndarray) -> None:
        """Queue ``(k, seq_len)`` int32 sequences; whole row groups go to the file as soon as they are complete."""
        if not len(sequences):
            return
        self._pending.append(sequences)
        self._pending_rows += len(sequences)
        if self._pending_rows >= self._group:
            block = np.concatenate(self._pending)
            whole = len(block) // self._group * self._group
            self._write_rows(block[:whole])
            self._pending = [block[whole:]]
            self._pending_rows = len(block) - whole

    def _write_rows(self, block: np.ndarray) -> None:
        values = pa.array(block.reshape(-1), type=pa.int32())
        offsets = pa.array(np.arange(0, block.size + 1, self.seq_len, dtype=np.int32))
        table = pa.Table.from_arrays([pa.ListArray.from_arrays(offsets, values)], schema=SEQUENCE_SCHEMA)
        self._writer.write_table(table, row_group_size=self._group)
        self.sequences += len(block)
        top = int(block.max())
        self.max_token_id = top if self.max_token_id is None else max(self.max_token_id, top)

    def close(self) -> None:
        """Write the last (short) row group and move the file to its final name."""
        if self._pending_rows:
            self._write_rows(np.concatenate(self._pending))
        self._pending, self._pending_rows = [], 0
        self._writer.close()
        self.fs.move(self._tmp, self.path)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
            return
        self._writer.close()
        self.fs.delete_file(self._tmp)
