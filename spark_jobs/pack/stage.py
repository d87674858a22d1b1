"""The ``pack`` stage: the cleaned corpus tokenized and packed into ``packed/`` (see :mod:`spark_jobs.pack.job`)."""

from __future__ import annotations

import json
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pyspark.sql import DataFrame

from slm_common.options import opt
from slm_common.tokenizer import load_tokenizer
from spark_jobs import storage
from spark_jobs.pack.job import pack_corpus, pack_summary
from spark_jobs.stage import CorpusResult, CorpusStage, StageView

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast


@dataclass
class PackOptions:
    tokenizer: str = opt(
        "offline-gpt2-bpe-opt",
        "HF hub id, tokenizer dir, or model dir holding its tokenizer; default offline GPT-2 BPE",
    )
    seq_len: int = opt(2048, "tokens per packed sequence")
    num_shards: int = opt(10, "packed train shards")
    val_fraction: float = opt(0.005, "share of documents (by id hash) routed to packed/val")
    seed: int = opt(0, "document order and the validation draw derive from the run's seed", run_wide=True)

    def validate(self) -> None:
        if self.seq_len < 1 or self.num_shards < 1:
            raise ValueError("--seq-len and --num-shards must be >= 1")
        if not 0 <= self.val_fraction < 1:
            raise ValueError("--val-fraction must be in [0, 1)")


class PackStage(CorpusStage):
    """Stage ``pack``: writes ``packed/`` (shards, tokenizer, manifest) from the cleaned corpus; removes nothing."""

    name = "pack"
    Options = PackOptions
    artifacts = "packed"

    def __init__(self) -> None:
        self._tokenizer: Future[PreTrainedTokenizerFast] | None = None

    def prepare(self, opts: PackOptions) -> None:
        """Load the tokenizer on a thread of its own (about a second: importing transformers, building the BPE)
        while the stages before pack run."""
        pool = ThreadPoolExecutor(1, thread_name_prefix="pack-tokenizer")
        self._tokenizer = pool.submit(load_tokenizer, opts.tokenizer)
        pool.shutdown(wait=False)  # the thread ends when the tokenizer is loaded

    def run(self, docs: DataFrame, opts: PackOptions, directory: str) -> CorpusResult:
        pack_corpus(docs, opts, directory, self._tokenizer.result() if self._tokenizer else None)
        return CorpusResult()

    def summary(self, view: StageView, opts: PackOptions) -> dict[str, Any]:
        """The manifest's totals: what the written shards hold."""
        return pack_summary(json.loads(storage.read_text(storage.join(view.directory, "manifest.json"))))
