"""``make demo``: the whole path on the embedded default corpus, on this machine, in a few minutes.

clean -> dedup -> pack (Spark, local mode) -> init a small OPT model -> train briefly -> resize the trained model.
Everything lands under ``out/demo/`` (``--output DIR`` elsewhere).

``--small`` (or ``SLM_DEMO_SMALL=1``) runs the same steps at test scale, in well under a minute: a cut of the corpus
that still gives every stage work (the first prose documents, the whole fixture, one standard-library package), a
2-layer model, a few training steps. ``make test`` runs it (tests/test_demo.py), so the README's main command cannot
break unnoticed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "out" / "demo"
STAGES = "filter,langid,quality,pii,exact_dedup,near_dedup,decontam,pack"
"""The default stages and the quality stages that need no model file (the classifier needs one: see README)."""


@dataclass(frozen=True)
class Scale:
    """How big each step is."""

    model: tuple[str, ...]
    resize_layers: int
    train: tuple[str, ...]
    pack: tuple[str, ...]
    prose_docs: int | None = None
    """Keep only this many prose documents (None: all)."""
    code_packages: tuple[str, ...] | None = None
    """Keep only these standard-library packages as code (None: the whole demo set)."""


FULL = Scale(
    model=("--layers", "4", "--hidden", "128", "--heads", "4", "--ffn", "512", "--positions", "64"),
    resize_layers=6,
    train=("--max-steps", "60", "--batch-size", "8", "--lr", "1e-3", "--warmup-steps", "5", "--eval-every", "20",
           "--save-every", "30"),
    pack=("--seq-len", "32", "--num-shards", "4", "--val-fraction", "0.05"),
)
SMALL = Scale(
    model=("--layers", "2", "--hidden", "64", "--heads", "2", "--ffn", "128", "--positions", "64"),
    resize_layers=3,
    train=("--max-steps", "6", "--batch-size", "4", "--lr", "5e-3", "--warmup-steps", "2", "--eval-every", "3",
           "--eval-batches", "2", "--save-every", "3", "--log-every", "1", "--num-workers", "0"),
    pack=("--seq-len", "32", "--num-shards", "2", "--val-fraction", "0.4", "--master", "local[2]"),
    prose_docs=40,
    code_packages=("json",),
)
"""Test scale. Two fifths of the documents go to val: the split is by doc id, which hashes the input path, and only
about 20 documents survive the cleaning at this scale, so a fifth left val empty for about one output folder in a
hundred (0.8^20); two fifths, for one in 27,000."""


def step(title: str, argv: list[str]) -> None:
    print(f"\n=== {title}\n$ {' '.join(argv)}", flush=True)
    started = time.time()
    subprocess.run([sys.executable, *argv], check=True, cwd=ROOT)
    print(f"--- {title}: {time.time() - started:.0f} s", flush=True)


def cut_corpus(inputs: list[str], scale: Scale) -> list[str]:
    """The corpus at ``scale``, in place: the first ``prose_docs`` prose documents, the fixture whole, and of the
    code only ``code_packages`` plus the loose files (the binary and Latin-1 ones the fixture relies on)."""
    prose, _fixture, code = (Path(p) for p in inputs)
    if scale.prose_docs is not None:
        lines = prose.read_bytes().splitlines(keepends=True)
        prose.write_bytes(b"".join(lines[: scale.prose_docs]))
    if scale.code_packages is not None:
        for lib in code.iterdir():
            for entry in lib.iterdir():
                if entry.is_dir() and entry.name not in scale.code_packages:
                    shutil.rmtree(entry)
    return inputs


def write_eval_set(prose: Path, path: Path, passages: int = 3, words: int = 20) -> Path:
    """A stand-in benchmark for the decontam stage: ``words``-word passages of the first ``passages`` prose
    documents that the quality rules keep (so they reach decontam), and a question no document contains."""
    import pyarrow as pa

    from spark_jobs.quality.stage import QualityOptions, QualityRules

    texts = [json.loads(line)["text"] for line in prose.read_text(encoding="utf-8").splitlines()]
    rules = QualityRules.from_options(QualityOptions()).rules(pa.array(texts, pa.string()))
    texts = [text for text, rule in zip(texts, rules, strict=True) if rule is None][:passages]
    questions = [" ".join(text.split()[5 : 5 + words]) + "?" for text in texts]
    questions.append("How many apples are left if Sam buys twelve and eats five of them on the way home?")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"text": q}) + "\n" for q in questions), encoding="utf-8")
    return path


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--output", type=Path, default=OUT, help="where everything goes (default: %(default)s)")
    p.add_argument(
        "--small",
        action="store_true",
        default=os.environ.get("SLM_DEMO_SMALL", "") not in ("", "0"),
        help="test scale: a cut of the corpus, a 2-layer model, a few steps (also SLM_DEMO_SMALL=1)",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    scale, out = (SMALL if args.small else FULL), args.output.resolve()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    corpus = out / "corpus"
    sys.path.insert(0, str(ROOT))
    from spark_jobs.demo_corpus import NotADemoCorpus, write_demo_corpus

    try:
        written = write_demo_corpus(str(corpus))
    except NotADemoCorpus as err:
        sys.exit(f"error: {err} (the demo writes its corpus there; delete it or choose another --output)")
    inputs = cut_corpus(written, scale)
    print(f"default corpus written to {corpus}: {', '.join(inputs)}")
    evals = write_eval_set(Path(inputs[0]), out / "evals" / "demo_eval.jsonl")
    data = out / "data"
    step("data pipeline (Spark)", ["-m", "spark_jobs.pipeline", "--input", *inputs, "--output", str(data),
                                   "--stages", STAGES, "--decontam-sets", str(evals), *scale.pack])
    report = json.loads((data / "report.json").read_text())
    print(f"report: {data / 'report.json'}; removed by stage: "
          + ", ".join(f"{k}={v.get('removed_by_reason')}" for k, v in report["stages"].items() if "docs_in" in v))
    if not (ROOT / "model_surgery" / "__main__.py").exists() or not (ROOT / "train" / "__main__.py").exists():
        return
    model = out / "model-init"
    step("random init (model_surgery)", ["-m", "model_surgery", "init", "--preset", "opt-125m", *scale.model,
                                         "--output", str(model)])
    run = out / "run"
    step("train (python -m train)", ["-m", "train", "--data", str(data / "packed"), "--model", str(model),
                                     "--output", str(run), *scale.train])
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [m["loss"] for m in metrics if "loss" in m]
    print(f"loss: {losses[0]:.3f} -> {losses[-1]:.3f} over {len(losses)} logged steps")
    print(f"run: {run}  plot: {run / 'loss.png'}  final model: {run / 'final'}")
    layers = scale.resize_layers
    step(f"resize to {layers} layers (dus)", ["-m", "model_surgery", "resize", "--model", str(run / "final"),
                                             "--layers", str(layers), "--output", str(out / f"model-{layers}-layers")])


if __name__ == "__main__":
    main()
