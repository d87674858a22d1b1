"""Bad input, case by case: a bad record becomes a removed/ row with reason ``invalid`` and the rule naming its
problem, and the run completes with the accounting identity; a bad file or column stops the run with one line naming
it (exit 2).

Every record-level case is a file of its own in ONE corpus, ingested by ONE pipeline run (the module fixture), so a
case is found by its ``source``; each test then checks its file's rows. The file-level cases fail while the inputs are
planned, before any Spark work, except the few that only a read or the written copy can show (a gzip stream cut off
past its first megabyte, ids that two rows share). ``hf://`` datasets go through the same record logic from the
Hugging Face data source, read here from a local dataset folder.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from spark_jobs.config import PipelineConfig
from spark_jobs.ingest import IngestOptions, InputError, Sources, ingest
from spark_jobs.ingest import plan as plan_module
from spark_jobs.ingest.plan import Plan
from spark_jobs.pipeline import main, run

MAX_DOC = 4096  # --max-doc-bytes of the runs here
MAX_FILE = 2000  # --max-file-bytes: below --max-doc-bytes, so it is the limit of code files
UNIT_BYTES = 4000  # uncompressed JSONL cut into byte ranges this long: a huge line spans several
PROSE = "A good line of prose.\nAnother line of it follows.\nAnd a third one ends it."
BIG = "x" * (MAX_DOC + 10)


def jsonl(*records: dict | bytes) -> bytes:
    """JSON lines: dicts dumped (ASCII escapes, as most writers do), bytes taken as the raw line."""
    return b"".join((r if isinstance(r, bytes) else json.dumps(r).encode()) + b"\n" for r in records)


def doc(doc_id: int | None = None, **fields) -> dict:
    return {**({} if doc_id is None else {"id": doc_id}), "text": PROSE, **fields}


def parquet(**columns: pa.Array) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table(columns), sink)
    return sink.getvalue().to_pybytes()


@dataclass(frozen=True)
class Case:
    """A file of the corpus and what must become of its rows, in order: None (kept) or the rule name."""

    path: str
    data: bytes
    expect: tuple[str | None, ...]
    kept_ids: tuple[int, ...] = ()  # doc ids the kept rows must have, when the input gives them


RECORD_CASES = {
    # JSONL
    "jsonl lone surrogate in text": Case(
        "in/surrogate.jsonl", jsonl(doc(1, text="half an emoji \ud83d " + PROSE)), ("bad_unicode",)
    ),
    "jsonl lone surrogate in metadata": Case(
        "in/surrogate_meta.jsonl", jsonl(doc(2, title="\udc00")), ("bad_unicode",)
    ),
    "jsonl surrogate pair kept": Case("in/pair.jsonl", jsonl(doc(3, text="emoji \U0001f600 " + PROSE)), (None,), (3,)),
    "jsonl id 4.7": Case("in/id_fraction.jsonl", jsonl(doc(4.7)), ("bad_id",)),
    "jsonl id 5.0 is 5": Case("in/id_integral_float.jsonl", jsonl(doc(5.0)), (None,), (5,)),
    "jsonl id NaN twice": Case(
        "in/id_nan.jsonl", jsonl(b'{"id": NaN, "text": "a"}', b'{"id": NaN, "text": "b"}'), ("bad_id", "bad_id")
    ),
    "jsonl id Infinity": Case("in/id_inf.jsonl", jsonl(b'{"id": Infinity, "text": "c"}'), ("bad_id",)),
    "jsonl id over int64": Case("in/id_overflow.jsonl", jsonl(doc(2**63)), ("bad_id",)),
    "jsonl id boolean": Case("in/id_bool.jsonl", jsonl(doc(True)), ("bad_id",)),
    "jsonl id list": Case("in/id_list.jsonl", jsonl(doc([6])), ("bad_id",)),
    "jsonl id not an integer": Case("in/id_word.jsonl", jsonl(doc(7), doc("seven")), (None, "bad_id"), (7,)),
    "jsonl text a number": Case("in/text_number.jsonl", jsonl({"text": 42}), ("text_not_string",)),
    "jsonl text an object": Case("in/text_object.jsonl", jsonl({"text": {"body": PROSE}}), ("text_not_string",)),
    "jsonl text null": Case("in/text_null.jsonl", jsonl({"text": None}), ("null_text",)),
    "jsonl no text field": Case("in/no_text.jsonl", jsonl(doc(), {"body": PROSE}), (None, "missing_text_field")),
    "jsonl blank text": Case("in/blank.jsonl", jsonl({"text": " \n "}), ("empty_text",)),
    "jsonl unknown kind": Case("in/kind.jsonl", jsonl(doc(kind="image")), ("bad_kind",)),
    "jsonl malformed": Case("in/malformed.jsonl", jsonl(b'{"text": "unterminated'), ("malformed_json",)),
    "jsonl array line": Case("in/array.jsonl", jsonl(b'["not", "an", "object"]'), ("malformed_json",)),
    "jsonl nested too deep": Case("in/deep.jsonl", jsonl(b"[" * 3000), ("malformed_json",)),
    "jsonl not UTF-8": Case("in/latin1.jsonl", jsonl(b'{"text": "caf\xe9"}'), ("not_utf8",)),
    "jsonl line too large": Case(
        "in/huge_line.jsonl", jsonl(doc(8), {"text": BIG}, doc(9)), (None, "too_large", None), (8, 9)
    ),
    "jsonl line too large across byte ranges": Case(
        "in/huge_split.jsonl",
        jsonl(doc(10), {"text": BIG * 3}, doc(11), doc(12)),
        (None, "too_large", None, None),
        (10, 11, 12),
    ),
    # gzipped JSONL
    "jsonl.gz line too large": Case(
        "in/huge.jsonl.gz", gzip.compress(jsonl({"text": BIG * 100}, doc(13))), ("too_large", None), (13,)
    ),
    "jsonl.gz lone surrogate": Case(
        "in/surrogate.jsonl.gz", gzip.compress(jsonl(doc(14, text="\ud800" + PROSE))), ("bad_unicode",)
    ),
    # Parquet
    "parquet binary text column": Case(
        "in/binary.parquet",
        parquet(text=pa.array([PROSE.encode(), b"caf\xe9 " * 5], pa.binary()), id=pa.array([15, 16])),
        (None, "not_utf8"),
        (15,),
    ),
    "parquet string column holding invalid UTF-8": Case(
        "in/bad_utf8.parquet",
        parquet(text=pa.array([PROSE.encode(), b"\xff\xfe"], pa.binary()).view(pa.string()), id=pa.array([17, 18])),
        (None, "not_utf8"),
        (17,),
    ),
    "parquet metadata column holding invalid UTF-8": Case(
        "in/bad_utf8_meta.parquet",
        parquet(
            text=pa.array([PROSE, PROSE]),
            url=pa.array([b"https://example.org", b"https://\xff"], pa.binary()).view(pa.string()),
            id=pa.array([23, 24]),
        ),
        (None, "not_utf8"),
        (23,),
    ),
    "parquet value too large": Case(
        "in/big_value.parquet", parquet(text=pa.array([PROSE, BIG]), id=pa.array([19, 20])), (None, "too_large"), (19,)
    ),
    "parquet float ids": Case(
        "in/float_ids.parquet",
        parquet(text=pa.array([PROSE] * 3), id=pa.array([21.0, 21.5, float("nan")])),
        (None, "bad_id", "bad_id"),
        (21,),
    ),
    "parquet all-null text column": Case("in/null_text.parquet", parquet(text=pa.nulls(2)), ("null_text", "null_text")),
    "parquet large_string text": Case(
        "in/large_string.parquet", parquet(text=pa.array([PROSE], pa.large_string()), id=pa.array([22])), (None,), (22,)
    ),
    # text files
    "txt too large": Case("in/book.txt", BIG.encode(), ("too_large",)),
    "txt.gz bomb": Case("in/bomb.txt.gz", gzip.compress(b"\n" * (8 << 20)), ("too_large",)),
    "txt not UTF-8": Case("in/latin1.txt", "café\n".encode("latin-1"), ("not_utf8",)),
    "txt with NUL bytes": Case("in/nul.txt", b"\x00\x01" * 20, ("binary_file",)),
    "txt empty": Case("in/empty.txt", b"", ("empty_text",)),
    # source code
    "code over --max-file-bytes": Case("repo/big.py", b"x = 1\n" * 400, ("too_large",)),
    "code binary": Case("repo/blob.py", b"\x00\x01\x02" * 50, ("binary_file",)),
    "code under an underscore package": Case("repo/_internal/mod.py", b"def f():\n    return 1\n", (None,)),
}
SHORT_RULES = {"null_text", "empty_text", "binary_file"}  # rules with nothing to measure; the others say what
NOT_INPUT = {  # under input directories, but no input: they must leave no row at all
    "in/_archives/repo.unpacked.json": b'{"unpacked": ["repo"]}\n',
    "in/_stage.json": b'{"key": "abc"}\n',
    "in/.cache/notes.jsonl": b"{broken\n",
    "repo/.git/hooks/pre-commit.py": b"\x00binary",
}


def write_files(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)


@pytest.fixture(scope="module")
def outputs(spark, tmp_path_factory):
    """The whole corpus through ingestion, once: the report and every output row by source file."""
    root = tmp_path_factory.mktemp("bad_input")
    write_files(root, {c.path: c.data for c in RECORD_CASES.values()} | NOT_INPUT)
    cfg = PipelineConfig(
        input=[str(root / "in"), str(root / "repo")],
        output=str(root / "out"),
        stages="",
        max_doc_bytes=MAX_DOC,
        max_file_bytes=MAX_FILE,
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(plan_module, "MAX_UNIT_BYTES", UNIT_BYTES)
        report = run(cfg, spark)
    by_source: dict[str, dict[str, list[dict]]] = {}
    for part in ("cleaned", "removed"):
        for row in pq.read_table(root / "out" / part).to_pylist():
            by_source.setdefault(row["source"], {"cleaned": [], "removed": []})[part].append(row)
    return root, report, by_source


@pytest.mark.parametrize("name", list(RECORD_CASES))
def test_bad_record_is_a_removed_row_with_its_rule(outputs, name: str) -> None:
    root, report, by_source = outputs
    case = RECORD_CASES[name]
    rows = by_source.get((root / case.path).as_uri(), {"cleaned": [], "removed": []})
    removed = [r["rule"].split(":")[0] for r in rows["removed"]]
    assert removed == [e for e in case.expect if e], rows["removed"]
    assert all(r["reason"] == "invalid" and (": " in r["rule"] or r["rule"] in SHORT_RULES) for r in rows["removed"])
    assert len(rows["cleaned"]) == case.expect.count(None), rows["cleaned"]
    if case.kept_ids:
        assert [r["doc_id"] for r in rows["cleaned"]] == list(case.kept_ids)


def test_run_accounts_for_every_row_and_reads_nothing_else(outputs) -> None:
    """input = cleaned + removed; every row comes from one of the case files (none from ``_*``/``.*`` names), and
    doc ids are unique, generated ones included."""
    root, report, by_source = outputs
    acc = report["accounting"]
    assert acc["input"] == acc["cleaned"] + acc["removed"] == sum(len(c.expect) for c in RECORD_CASES.values())
    assert set(by_source) == {(root / c.path).as_uri() for c in RECORD_CASES.values()}
    ids = [r["doc_id"] for rows in by_source.values() for part in rows.values() for r in part]
    assert len(ids) == len(set(ids))
    assert report["stages"]["ingest"]["removed_by_reason"] == {"invalid": acc["removed"]}


def test_oversized_values_are_never_kept_whole(outputs) -> None:
    """A too-large document keeps no text in removed/ (it was never held), and its rule gives size and limit."""
    root, _, by_source = outputs
    big = by_source[(root / "in/huge_line.jsonl").as_uri()]["removed"][0]
    assert big["text"] is None
    assert big["rule"] == f"too_large: line of {len(json.dumps({'text': BIG}))} bytes, over --max-doc-bytes {MAX_DOC}"
    code = by_source[(root / "repo/big.py").as_uri()]["removed"][0]
    assert code["rule"] == f"too_large: 2400 bytes, over --max-file-bytes {MAX_FILE}"
    bomb = by_source[(root / "in/bomb.txt.gz").as_uri()]["removed"][0]
    assert bomb["rule"] == f"too_large: at least {MAX_DOC + 1} bytes, over --max-doc-bytes {MAX_DOC}"


def test_lone_surrogates_are_replaced_in_the_removed_row(outputs) -> None:
    root, _, by_source = outputs
    row = by_source[(root / "in/surrogate.jsonl").as_uri()]["removed"][0]
    assert row["text"] == "half an emoji \ufffd " + PROSE and row["rule"] == "bad_unicode: lone surrogate in text"
    meta_row = by_source[(root / "in/surrogate_meta.jsonl").as_uri()]["removed"][0]
    assert json.loads(meta_row["meta"]) == {"title": "\ufffd"} and meta_row["text"] == PROSE
    assert meta_row["rule"] == "bad_unicode: lone surrogate in meta"


@pytest.fixture(scope="module")
def hf_rows(spark, tmp_path_factory):
    """A local Hugging Face dataset folder (binary text, float ids) through the ``huggingface`` data source and
    ingestion's record logic; ``case`` names each row."""
    folder = tmp_path_factory.mktemp("hf_bad")
    texts = [PROSE.encode(), b"caf\xe9", BIG.encode(), PROSE.encode(), None, PROSE.encode()]
    ids = [31.0, 32.0, 33.0, 34.5, 35.0, float("inf")]
    cases = ["kept", "not_utf8", "too_large", "bad_id", "null_text", "bad_id"]
    pq.write_table(pa.table({"text": pa.array(texts, pa.binary()), "id": ids, "case": cases}), folder / "train.parquet")
    opts = IngestOptions(max_doc_bytes=MAX_DOC)
    docs, _ = ingest(spark, Sources([str(folder)], Plan(), [str(folder)], ["local"]), opts)
    return [(json.loads(r["meta"])["case"], r) for r in docs.collect()], len(cases)


@pytest.mark.parametrize("case", ["kept", "not_utf8", "too_large", "bad_id", "null_text"])
def test_hf_dataset_bad_record(hf_rows, case: str) -> None:
    rows, total = hf_rows
    assert len(rows) == total  # one row out per row in
    got = [r for c, r in rows if c == case]
    assert got and all((r["rule"] or "").split(":")[0] == ("" if case == "kept" else case) for r in got), got
    if case == "kept":
        assert got[0]["doc_id"] == 31 and got[0]["text"] == PROSE


def parquet_text(text: pa.Array) -> Callable[[Path], list[str]]:
    def make(d: Path) -> list[str]:
        pq.write_table(pa.table({"text": text}), d / "f.parquet")
        return [str(d / "f.parquet")]

    return make


def write(name: str, data: bytes) -> Callable[[Path], list[str]]:
    def make(d: Path) -> list[str]:
        (d / name).write_bytes(data)
        return [str(d / name)]

    return make


def truncated(data: bytes, keep: float) -> bytes:
    return data[: int(len(data) * keep)]


def many_lines(n: int) -> bytes:
    return jsonl(*({"text": f"{PROSE} {i}"} for i in range(n)))


FILE_CASES = {  # a run that must stop: (inputs made in a folder, what the one line must say)
    "parquet timestamp text column": (
        parquet_text(pa.array([0], pa.timestamp("ms"))),
        "f.parquet: text column 'text' holds timestamp[ms], not text",
    ),
    "parquet struct text column": (
        parquet_text(pa.array([{"a": "x"}])),
        "f.parquet: text column 'text' holds struct<a: string>, not text",
    ),
    "parquet list text column": (parquet_text(pa.array([["x"]])), "f.parquet: text column 'text' holds list<"),
    "parquet integer text column": (parquet_text(pa.array([1])), "f.parquet: text column 'text' holds int64, not text"),
    "parquet without text column": (write("f.parquet", parquet(body=pa.array(["x"]))), "f.parquet has no text column"),
    "parquet corrupt": (write("f.parquet", b"PAR1 not a footer PAR1"), "cannot read Parquet file file://"),
    "parquet truncated": (
        write("f.parquet", truncated(parquet(text=pa.array([PROSE] * 100)), 0.6)),
        "cannot read Parquet file file://",
    ),
    "jsonl without the text field": (
        write("f.jsonl", jsonl({"body": PROSE}, b"{broken", {"body": "more"})),
        "f.jsonl has no text field 'text' in its first 2 records (fields: body)",
    ),
    "jsonl.gz not gzip": (write("f.jsonl.gz", b'{"text": "plain"}\n'), "f.jsonl.gz: zlib inflate failed"),
    "txt.gz not gzip": (write("f.txt.gz", b"plain text"), "f.txt.gz: zlib inflate failed"),
    "jsonl.gz truncated early": (write("f.jsonl.gz", truncated(gzip.compress(many_lines(50)), 0.5)), "f.jsonl.gz: "),
    "output is the input directory": (lambda d: [str(d)], "is inside the input directory"),
    "output inside the input directory": (lambda d: [str(d.parent)], "is inside the input directory"),
    "output under a file": (write("f.jsonl", jsonl(doc())), "cannot write to --output "),
}
OUTPUT = {  # where these cases write (the others: in/out)
    "output is the input directory": lambda d: d,
    "output under a file": lambda d: Path(write("blocker", b"")(d)[0]) / "out",  # unwritable even for root
}


@pytest.mark.parametrize("name", list(FILE_CASES))
def test_bad_file_stops_before_spark_with_one_line(tmp_path: Path, capsys, name: str) -> None:
    """Planning refuses it: exit 2, one line naming the file and the problem, no Spark session needed."""
    make, message = FILE_CASES[name]
    folder = tmp_path / "in"
    folder.mkdir()
    inputs = make(folder)
    out = OUTPUT.get(name, lambda d: d / "out")(folder)
    assert main(["--input", *inputs, "--output", str(out), "--stages", ""]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert not (out / "_stages").exists()


def spark_argv(inputs: list[str], out: Path, *extra: str) -> list[str]:
    """Flags that make ``main``'s session the test session (same master, same shuffle width)."""
    return [
        "--input",
        *inputs,
        "--output",
        str(out),
        "--stages",
        "",
        "--master",
        "local[2]",
        "--shuffle-partitions",
        "4",
        *extra,
    ]


def gzip_cut_off_late(path: Path) -> None:
    """A gzip stream cut off past the first megabyte the planner inflates (an incompressible tail makes it long)."""
    data = gzip.compress(many_lines(3000) + os.urandom(1 << 20).hex().encode())
    path.write_bytes(truncated(data, 0.9))


def parquet_page_corrupt(path: Path) -> None:
    """A Parquet file whose footer is fine and whose data page is overwritten."""
    pq.write_table(pa.table({"text": [f"{PROSE} {i}" for i in range(500)]}), path)
    data = bytearray(path.read_bytes())
    page = pq.ParquetFile(path).metadata.row_group(0).column(0).data_page_offset
    data[page + 40 : page + 240] = b"\xff" * 200
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("name, make", [("big.jsonl.gz", gzip_cut_off_late), ("page.parquet", parquet_page_corrupt)])
def test_file_that_breaks_while_read_stops_after_the_pass(spark, tmp_path: Path, capsys, name, make) -> None:
    """What only the read shows: the run stops after the ingestion pass with one line naming the file, and the
    written copy is not marked finished (a rerun reads the file again)."""
    make(tmp_path / name)
    out = tmp_path / "out"
    assert main(spark_argv([str(tmp_path / name)], out)) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot read {(tmp_path / name).as_uri()}: "), lines
    assert not list(out.glob("_stages/*/_stage.json")) and not (out / "cleaned").exists()


def test_duplicate_input_ids_stop_the_run_and_generated_ids_get_past(spark, tmp_path: Path, capsys) -> None:
    """Two files giving id 7: one line naming the id and both files, exit 2, no finished marker; with
    ``--id-column ''`` the same input runs, each document with a generated id."""
    (tmp_path / "a.jsonl").write_bytes(jsonl(doc(6), doc(7)))
    (tmp_path / "b.jsonl").write_bytes(jsonl(doc(7, text=PROSE + " again")))
    inputs, out = [str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")], tmp_path / "out"
    assert main(spark_argv(inputs, out)) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    a, b = (tmp_path / "a.jsonl").as_uri(), (tmp_path / "b.jsonl").as_uri()
    assert len(lines) == 1 and lines[0].startswith("error: duplicate input id 7 in "), lines
    assert {a, b} == set(lines[0].split(" in ", 1)[1].split(";")[0].split(" and ")), lines
    assert not list(out.glob("_stages/*/_stage.json"))
    assert main(spark_argv(inputs, out, "--id-column", "")) == 0
    ids = pq.read_table(out / "cleaned").column("doc_id").to_pylist()
    assert len(ids) == len(set(ids)) == 3 and 7 not in ids


def test_hf_dataset_with_a_struct_text_column_is_refused(spark, tmp_path: Path) -> None:
    pq.write_table(pa.table({"text": pa.array([{"a": "x"}])}), tmp_path / "train.parquet")
    with pytest.raises(InputError, match=r"text column 'text' holds struct<a:string>, not text") as err:
        ingest(spark, Sources([str(tmp_path)], Plan(), [str(tmp_path)], ["local"]), IngestOptions())
    assert "\n" not in str(err.value)
