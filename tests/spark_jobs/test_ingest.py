"""Ingestion: every reader, bad input of each kind, and doc ids that no partitioning can change."""

from __future__ import annotations

import gzip
import json
import random
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from spark_jobs.config import PipelineConfig
from spark_jobs.documents import annotated_schema, position_id
from spark_jobs.ingest import IngestOptions, InputError, _read_units, ingest, plan_sources
from spark_jobs.ingest import plan as plan_module
from spark_jobs.ingest.plan import MAX_ROW_GROUP_SLICES, cut, plan_inputs
from spark_jobs.ingest.readers import ReadOptions, ReadUnit, read_unit
from tests.spark_jobs.generated_docs import de_sentence, en_sentence, prose

ROOT = Path(__file__).resolve().parents[2]
PROSE = "First line of a document.\nSecond line here.\nThird line closes it."


def cfg_for(inputs: list[str], tmp_path: Path, **kw) -> PipelineConfig:
    return PipelineConfig(input=inputs, output=str(tmp_path / "out"), stages="", **kw)


def rows_of(batches) -> list[dict]:
    return [r for b in batches for r in b.to_pylist()]


def write_jsonl(path: Path, lines: list[bytes]) -> None:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as fh:
        fh.write(b"\n".join(lines) + b"\n")


@pytest.fixture()
def corpus(tmp_path: Path) -> dict[str, Path]:
    """One source of each kind, with bad rows mixed in."""
    d = tmp_path / "in"
    d.mkdir()
    write_jsonl(
        d / "a.jsonl",
        [json.dumps({"text": PROSE + f" {i}", "lang_hint": "en", "n": i}).encode() for i in range(5)]
        + [
            b"{not json",
            b'{"text": "bad \xff byte"}',
            b"",
            json.dumps({"text": None}).encode(),
            json.dumps({"body": "no text field"}).encode(),
            json.dumps({"text": "  "}).encode(),
        ],
    )
    write_jsonl(d / "b.jsonl.gz", [json.dumps({"text": PROSE + " gz", "kind": "text"}).encode()])
    pq.write_table(
        pa.table(
            {
                "text": [PROSE + f" pq {i}" for i in range(50)],
                "id": list(range(100, 150)),
                "url": [f"https://example.org/{i}" for i in range(50)],
            }
        ),
        d / "c.parquet",
        row_group_size=7,
    )
    (d / "notes.txt").write_text(PROSE + "\nfrom a text file")
    code = tmp_path / "repo"
    (code / "pkg").mkdir(parents=True)
    (code / "pkg" / "__init__.py").write_text("")
    (code / "pkg" / "mod.py").write_text("def f(x):\n    return x + 1\n\n\nclass A:\n    pass\n")
    (code / "pkg" / "bin.py").write_bytes(b"\x00\x01\x02" * 50)
    (code / "pkg" / "latin.py").write_bytes("s = 'caf\xe9'\n".encode("latin-1"))
    (code / "pkg" / "big.py").write_text("x = 1\n" * 400)
    (code / "README.rst").write_text("not code")
    return {"dir": d, "code": code}


def test_jsonl_reader_turns_every_line_into_a_row(corpus):
    plan = plan_inputs([str(corpus["dir"] / "a.jsonl")], ".py", "id", "text")
    rows = rows_of(read_unit(plan.units[0], ReadOptions()))
    assert len(rows) == 10  # 11 lines, one blank
    valid = [r for r in rows if r["reason"] is None]
    assert len(valid) == 5 and all(r["kind"] == "text" for r in valid)
    assert json.loads(valid[0]["meta"]) == {"lang_hint": "en", "n": 0}
    rules = sorted(r["rule"].split(":")[0] for r in rows if r["reason"])
    assert rules == ["empty_text", "malformed_json", "missing_text_field", "not_utf8", "null_text"]
    assert all(r["reason"] == "invalid" for r in rows if r["rule"])


def test_code_reader_metadata_and_invalid_files(corpus):
    plan = plan_inputs([str(corpus["code"])], ".py", "id", "text")
    assert plan.skipped == {".rst": 1}
    opts = ReadOptions(max_file_bytes=1000)
    rows = {json.loads(r["meta"])["path"]: r for u in plan.units for r in rows_of(read_unit(u, opts))}
    assert set(rows) == {"pkg/__init__.py", "pkg/mod.py", "pkg/bin.py", "pkg/latin.py", "pkg/big.py"}
    assert rows["pkg/mod.py"]["kind"] == "code" and rows["pkg/mod.py"]["reason"] is None
    assert json.loads(rows["pkg/mod.py"]["meta"])["repo"] == "repo"
    assert rows["pkg/bin.py"]["rule"] == "binary_file"
    assert rows["pkg/latin.py"]["rule"].startswith("not_utf8")
    assert rows["pkg/big.py"]["rule"] == "too_large: 2400 bytes, over --max-file-bytes 1000"
    assert rows["pkg/__init__.py"]["rule"] == "empty_text"


def test_parquet_units_split_by_row_group_keep_ids_and_positions(corpus):
    plan = plan_inputs([str(corpus["dir"] / "c.parquet")], ".py", "id", "text")
    units = cut(plan.units, 4)
    assert len(plan.units) == 8 and len(units) == 2 and plan.id_type == "long"  # small row groups, 4 per unit
    rows = [r for u in units for r in rows_of(read_unit(u, ReadOptions()))]
    assert [r["doc_id"] for r in rows] == list(range(100, 150))
    assert json.loads(rows[3]["meta"]) == {"url": "https://example.org/3"}


def test_jsonl_byte_ranges_read_every_line_once_with_the_whole_files_ids(tmp_path, monkeypatch):
    """However a file is cut (a cut inside a line, on a newline, right after one, inside a multi-byte character, inside
    a line over --max-doc-bytes), the ranges together give exactly the whole file's rows, ids and verdicts, in order."""
    import random

    rng = random.Random(0)
    lines = []
    for i in range(300):
        body = "".join(rng.choice(["word ", "é", "中", "\n", "  "]) for _ in range(rng.randint(0, 60)))
        lines.append(rng.choice([json.dumps({"text": body, "n": i}).encode(), b"", b"{bad", b'{"text": "\xff"}']))
    path = tmp_path / "dump.jsonl"
    write_jsonl(path, lines)
    whole = plan_inputs([str(path)], ".py", "id", "text")
    assert len(whole.units) == 1 and not whole.units[0].byte_end
    opts = ReadOptions(max_doc_bytes=150)
    expected = rows_of(read_unit(whole.units[0], opts))
    assert len(expected) == sum(1 for line in lines if line)
    too_large = [r for r in expected if (r["rule"] or "").startswith("too_large")]
    assert len(too_large) == sum(1 for line in lines if len(line) > 150) > 10
    for unit_bytes in (1, 2, 3, 7, 64, 1000, path.stat().st_size - 1):
        monkeypatch.setattr(plan_module, "MAX_UNIT_BYTES", unit_bytes)
        units = cut(whole.units, 1)
        assert len(units) == -(-path.stat().st_size // unit_bytes)
        assert [r for u in units for r in rows_of(read_unit(u, opts))] == expected


def test_units_follow_the_input_size_and_the_parallelism():
    """105 MB in one Parquet row group or one JSONL file: as many units as the parallelism asks (not one, not two
    64 MB ones that leave cores idle), within the caps and never under the floor; a gzipped file stays whole (gzip is
    not splittable)."""
    mb = 1 << 20
    group = ReadUnit(
        "parquet", "file:///d/one.parquet", "file:///d/one.parquet", rg_end=1, row_end=39_000, size=105 * mb
    )
    for parallelism, slices in ((1, 2), (8, 8), (64, MAX_ROW_GROUP_SLICES)):
        units = cut([group], parallelism)
        assert len(units) == slices and units[0].row_start == 0 and units[-1].row_end == 39_000
        assert all(a.row_end == b.row_start == b.row_offset for a, b in zip(units, units[1:], strict=False))
    dump = ReadUnit("jsonl", "file:///d/dump.jsonl", "file:///d/dump.jsonl", size=105 * mb)
    assert len(cut([dump], 1)) == 2  # the 64 MB cap
    assert len(cut([dump], 8)) == 8
    assert len(cut([dump], 1000)) == -(-105 * mb // plan_module.MIN_UNIT_BYTES)
    assert all(u.byte_end - u.byte_start >= plan_module.MIN_UNIT_BYTES for u in cut([dump], 1000))
    gz = ReadUnit("jsonl", "file:///d/dump.jsonl.gz", "file:///d/dump.jsonl.gz", size=105 * mb)
    assert cut([gz], 8) == [gz]


def write_one_big_row_group_then_small_ones(path: Path, rows: int) -> pa.Table:
    """A Parquet file of one row group of ``rows`` rows, then five of 40: texts of varied length, some null, and no
    id column (doc ids derive from row positions)."""
    texts = [None if i % 97 == 5 else f"{i} " + "word " * (i % 37) for i in range(rows + 200)]
    table = pa.table({"text": texts, "n": list(range(len(texts)))})
    with pq.ParquetWriter(path, table.schema) as writer:
        writer.write_table(table.slice(0, rows), row_group_size=rows)
        for start in range(rows, rows + 200, 40):
            writer.write_table(table.slice(start, 40))
    return table


@pytest.mark.parametrize("parallelism", [1, 3, 7, 40])
def test_one_big_row_group_is_read_in_row_slices_with_the_unsplit_ids(tmp_path, monkeypatch, parallelism):
    """A large row group becomes several units of row slices (crossing the reader's batches anywhere); together
    they read exactly the file's rows, in order, with the doc ids of their positions in the file."""
    monkeypatch.setattr(plan_module, "MIN_UNIT_BYTES", 1)
    path = tmp_path / "one.parquet"
    table = write_one_big_row_group_then_small_ones(path, 3000)
    plan = plan_inputs([str(path)], ".py", "id", "text")
    units = cut(plan.units, parallelism)
    sliced = [u for u in units if u.rg_start == 0]
    if parallelism == 1:  # the whole input is one unit's worth: no slices
        assert len(sliced) == 1 and sliced[0].row_start == 0
    else:
        assert 2 <= len(sliced) <= MAX_ROW_GROUP_SLICES and (parallelism < 40 or len(sliced) == MAX_ROW_GROUP_SLICES)
    rows = [r for u in units for r in rows_of(read_unit(u, ReadOptions()))]
    source = path.as_uri()
    assert [json.loads(r["meta"])["n"] for r in rows] == table.column("n").to_pylist()
    assert [r["text"] for r in rows] == table.column("text").to_pylist()
    assert [r["doc_id"] for r in rows] == [position_id(source, i) for i in range(table.num_rows)]
    assert [r["rule"] for r in rows if r["rule"]] == ["null_text"] * sum(t is None for t in table["text"].to_pylist())


def test_a_unit_of_a_large_row_group_holds_a_batch_not_the_column_chunk(tmp_path):
    """Reading the first slice of a 32 MB row group (random text, which does not compress) allocates about a batch:
    pyarrow's default would hold every column chunk of the row group from its first batch on."""
    rng = random.Random(3)
    texts = ["".join(rng.choices("abcdefghijklmnopqrstuvwxyz0123456789 \n", k=2000)) for _ in range(16_000)]
    path = tmp_path / "big.parquet"
    pq.write_table(pa.table({"text": texts}), path, row_group_size=len(texts), use_dictionary=False)
    assert pq.ParquetFile(path).metadata.row_group(0).column(0).total_compressed_size > 24 << 20
    unit = replace(plan_inputs([str(path)], ".py", "id", "text").units[0], row_end=2000)
    before = pa.total_allocated_bytes()
    held = []
    for batch in read_unit(unit, ReadOptions()):
        held.append(pa.total_allocated_bytes() - before - batch.nbytes)
    assert len(held) >= 2 and max(held) < 8 << 20


def test_string_ids_switch_the_run_to_string_doc_ids(tmp_path):
    write_jsonl(
        tmp_path / "s.jsonl",
        [json.dumps({"id": "doc-a", "text": PROSE}).encode(), json.dumps({"text": PROSE}).encode()],
    )
    plan = plan_inputs([str(tmp_path / "s.jsonl")], ".py", "id", "text")
    assert plan.id_type == "string"
    rows = rows_of(read_unit(plan.units[0], ReadOptions(id_type=plan.id_type)))
    assert rows[0]["doc_id"] == "doc-a" and len(rows[1]["doc_id"]) == 16


def test_bad_inputs_give_one_line_errors(tmp_path):
    (tmp_path / "corrupt.parquet").write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(InputError, match="cannot read Parquet file .*corrupt.parquet"):
        plan_inputs([str(tmp_path / "corrupt.parquet")], ".py", "id", "text")
    pq.write_table(pa.table({"body": ["x"]}), tmp_path / "notext.parquet")
    with pytest.raises(InputError, match="no text column 'text'"):
        plan_inputs([str(tmp_path / "notext.parquet")], ".py", "id", "text")
    with pytest.raises(InputError, match="input not found"):
        plan_inputs([str(tmp_path / "missing.jsonl")], ".py", "id", "text")
    (tmp_path / "data.bin").write_bytes(b"x")
    with pytest.raises(InputError, match="unknown input format"):
        plan_inputs([str(tmp_path / "data.bin")], ".py", "id", "text")


def test_cli_reports_bad_input_in_one_line(tmp_path):
    pq.write_table(pa.table({"body": ["x"]}), tmp_path / "notext.parquet")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "spark_jobs.pipeline",
            "--input",
            str(tmp_path / "notext.parquet"),
            "--output",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: Parquet file")
    assert "Traceback" not in proc.stderr


def test_spark_ingest_all_sources_and_ids_independent_of_partitioning(spark, corpus, tmp_path):
    cfg = cfg_for([str(corpus["dir"]), str(corpus["code"])], tmp_path)
    opts = cfg.options(IngestOptions)
    docs, info = ingest(spark, plan_sources(cfg.input, opts), opts)
    assert info["files"] == 9 and info["id_type"] == "long"
    got = sorted((r["doc_id"], r["source"], r["reason"]) for r in docs.collect())
    assert len(got) == 10 + 1 + 50 + 1 + 5
    assert len({g[0] for g in got}) == len(got)
    plan = plan_inputs(cfg.input, ".py", "id", "text")
    schema = annotated_schema()
    opts = ReadOptions()
    for slices in (1, 3):
        again = _read_units(spark, plan.units, opts, schema, slices=slices)
        assert sorted((r["doc_id"], r["source"], r["reason"]) for r in again.collect()) == got


def test_python_workers_share_what_their_chains_computed(spark, tmp_path):
    """A second file of the same texts, read by a new Python worker (another pool: another environment) of the same
    executor, is not computed again: the worker takes in what the first one wrote."""
    from spark_jobs.batches import RowChain
    from spark_jobs.documents import arrow_schema

    rng = random.Random(5)
    texts = [f"{en_sentence(rng)} {i}" for i in range(300)]
    files = ("first", "copy")
    for name in files:
        pq.write_table(pa.table({"id": list(range(300)), "text": texts}), tmp_path / f"{name}.parquet")
    shown = spark.sparkContext.accumulator(0)

    def count(batch: pa.RecordBatch) -> dict:
        shown.add(batch.num_rows)
        return {}

    schema = annotated_schema()
    chain = RowChain((count,), arrow_schema(schema), memo=f"shared-{tmp_path.name}")
    opts = ReadOptions()
    units = {name: plan_inputs([str(tmp_path / f"{name}.parquet")], ".py", "id", "text").units for name in files}
    assert _read_units(spark, units["first"], opts, schema, chain).count() == 300
    assert shown.value == 300
    environment = spark.sparkContext.environment
    environment["SLM_TEST_WORKER_POOL"] = "second"  # a new pool of Python workers: none remembers anything
    try:
        assert _read_units(spark, units["copy"], opts, schema, chain).count() == 300
    finally:
        del environment["SLM_TEST_WORKER_POOL"]
    assert shown.value == 300


def test_pipeline_ingest_only_keeps_the_accounting_identity(spark, corpus, tmp_path):
    from spark_jobs.pipeline import run

    report = run(cfg_for([str(corpus["dir"]), str(corpus["code"])], tmp_path), spark)
    acc = report["accounting"]
    assert acc["input"] == 67 and acc["input"] == acc["cleaned"] + acc["removed"]
    assert report["stages"]["ingest"]["removed_by_reason"] == {"invalid": acc["removed"]}
    removed = spark.read.parquet(str(tmp_path / "out" / "removed"))
    assert set(removed.columns) >= {"doc_id", "text", "kind", "source", "reason", "rule", "duplicate_of"}
    again = run(cfg_for([str(corpus["dir"]), str(corpus["code"])], tmp_path), spark)
    assert again["stages"]["ingest"]["reused"] is True


def test_batches_are_cut_by_text_size(tmp_path, monkeypatch):
    """Large documents make short batches (JSONL as read; Parquet sized from the row group's statistics), so a batch
    never gathers gigabytes of text; every row still comes out once, in order."""
    from spark_jobs.ingest import readers

    monkeypatch.setattr(readers, "BATCH_TEXT_CHARS", 1000)
    texts = [f"{i} " + "word " * 80 for i in range(12)]  # about 400 characters each
    write_jsonl(tmp_path / "big.jsonl", [json.dumps({"text": t}).encode() for t in texts])
    pq.write_table(pa.table({"text": texts}), tmp_path / "big.parquet", row_group_size=12)
    for name in ("big.jsonl", "big.parquet"):
        (unit,) = plan_inputs([str(tmp_path / name)], ".py", "id", "text").units
        batches = list(read_unit(unit, ReadOptions()))
        assert [r["text"] for b in batches for r in b.to_pylist()] == texts
        assert len(batches) >= 3 and all(sum(map(len, b.column("text").to_pylist())) < 2000 for b in batches)


def test_one_row_group_file_runs_in_several_tasks_with_the_same_outputs(spark, tmp_path, monkeypatch):
    """The same rows written as one row group and as many small ones: the one-group file is read by several tasks
    (several part files of the first stage's copy), and ``cleaned/`` and ``removed/`` are the same rows in the same
    order (ids from an id column; only ``source``, the file's path, differs)."""
    import random

    from spark_jobs.ordered import part_files
    from spark_jobs.pipeline import run

    monkeypatch.setattr(plan_module, "MIN_UNIT_BYTES", 1)
    rng = random.Random(5)
    texts = [prose(rng, rng.choice([en_sentence, en_sentence, de_sentence]), lines=3, per_line=1) for _ in range(1500)]
    texts += [texts[i] for i in range(0, 1500, 10)]  # exact copies, later in the input: exact_dedup keeps the first
    rng.shuffle(texts)
    table = pa.table({"id": rng.sample(range(10**9), len(texts)), "text": texts})
    outputs = {}
    for name, group_rows in (("one", len(texts)), ("many", 50)):
        (tmp_path / name).mkdir()
        pq.write_table(table, tmp_path / name / "docs.parquet", row_group_size=group_rows)
        cfg = PipelineConfig(
            input=[str(tmp_path / name)], output=str(tmp_path / f"out-{name}"), stages="filter,langid,exact_dedup"
        )
        report = run(cfg, spark)
        out = tmp_path / f"out-{name}"
        first = next((out / "_stages").glob("00-*"))
        parts = {
            part: [{k: v for k, v in r.items() if k != "source"} for r in pq.read_table(out / part).to_pylist()]
            for part in ("cleaned", "removed")
        }
        outputs[name] = (report["input"]["read_units"], len(part_files(str(first))), parts)
    (units, tasks, one), (_, _, many) = outputs["one"], outputs["many"]
    assert units >= 4 and tasks >= 2
    assert one == many
    assert len(one["cleaned"]) + len(one["removed"]) == len(texts)
    assert {r["reason"] for r in one["removed"]} >= {"language", "exact_duplicate"}


WHITESPACE_LIKE = ["\x1c", "\x1f", "\x85", "\xa0", "\u2028", "\u3000", "\u200b", "\ufeff", "\u180e", " \t\n"]


@pytest.mark.parametrize(
    "columns",
    [
        {"id": pa.array([5, 7, 9], pa.int64()), "text": ["a b", "c\nd", "é ü"], "kind": ["text", "code", None]},
        {"text": pa.array(["one", "two"], pa.large_string()), "url": ["u1", None], "n": [1, 2]},
        {"id": pa.array([1, 2], pa.uint32()), "text": ["x", "y"], "kind": ["", "code"], "when": [None, None]},
        {"id": [1, 2, 3], "text": ["fine", "", "also"]},  # a blank text: the batch goes row by row
        {"id": [1.0, 2.0], "text": ["float ids", "are integral"]},
        {"id": [1, None], "text": ["a null id", "gets a position id"]},
        {"id": [1, 2], "text": ["a bad", "kind"], "kind": ["text", "prose"]},
        {"id": ["3", "4"], "text": ["string", "ids"]},
        {"id": list(range(len(WHITESPACE_LIKE))), "text": WHITESPACE_LIKE},
        *({"id": [1, 2], "text": ["word", blank]} for blank in WHITESPACE_LIKE),
    ],
)
def test_ordinary_batches_built_on_columns_equal_the_row_by_row_documents(columns):
    """A batch's documents are the same whether built on its columns (ordinary documents only) or row by row, which
    every batch with a problem takes: ids, kinds, metadata, and which texts count as blank (Python's ``str.strip``)."""
    from spark_jobs.ingest.readers import DocBuilder

    batch = pa.RecordBatch.from_pydict(columns)
    opts = ReadOptions()
    built = DocBuilder(opts)
    built.add_records(batch, "src", iter(range(10, 10 + batch.num_rows)))
    rows = DocBuilder(opts)
    for position, record in enumerate(batch.to_pylist(), start=10):
        rows.add_record(record, "src", position)
    assert built.flush().to_pylist() == rows.flush().to_pylist()


def test_documents_built_on_columns_and_row_by_row_keep_their_order(tmp_path):
    """A builder holding rows of both kinds hands them on in the order they were added."""
    from spark_jobs.ingest.readers import DocBuilder

    builder = DocBuilder(ReadOptions())
    builder.add_records(pa.RecordBatch.from_pydict({"id": [1], "text": ["   "]}), "s", iter([0]))  # row by row
    builder.add_records(pa.RecordBatch.from_pydict({"id": [2, 3], "text": ["b", "c"]}), "s", iter([1, 2]))
    builder.add_records(pa.RecordBatch.from_pydict({"id": [4], "text": [None]}), "s", iter([3]))
    assert len(builder) == 4
    out = builder.flush()
    assert out.column("doc_id").to_pylist() == [1, 2, 3, 4]
    assert out.column("rule").to_pylist() == ["empty_text", None, None, "null_text"]
    assert len(builder) == 0 and builder.flush().num_rows == 0
