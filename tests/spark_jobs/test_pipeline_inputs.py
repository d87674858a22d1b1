"""Inputs through the whole pipeline: an ``hf://`` dataset and non-default column names, judged by the written outputs.

``hf://datasets/OWNER/NAME`` goes through the Hub: the driver asks for the dataset's commit, ``datasets`` resolves
its files and the ``pyspark_huggingface`` source streams them from the Python workers. With no Hub reachable here, a
local Hugging Face-style dataset folder (``data/train-0000N-of-00002.parquet``, ``data/test-...``) is served by a
small HTTP server in this process that answers the Hub API calls those libraries make (dataset info, tree listing,
file resolve with ranges), and the pipeline runs as a CLI process with ``HF_ENDPOINT`` pointing at it: every Python
process of the run (driver, workers) then takes the Hub at that address, as with any mirror. The in-process session
cannot serve here: its workers were started offline.

The same columns, named ``content``/``uid``/``category`` and with decoy ``text``/``id``/``kind`` columns beside them,
are read from a Parquet file and a JSONL file in-process.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from spark_jobs.config import PipelineConfig
from spark_jobs.pipeline import run
from tests.spark_jobs.generated_docs import en_sentence, prose, python_module

ROOT = Path(__file__).resolve().parents[2]
REPO = "slm-tests/generated-corpus"
COMMIT = hashlib.sha1(b"generated-corpus").hexdigest()
COLUMNS = ["--text-column", "content", "--id-column", "uid", "--kind-column", "category"]


def records(rng: random.Random, first_id: int, count: int) -> list[dict[str, Any]]:
    """Rows with the document in ``content``, its id in ``uid`` and its kind in ``category``; ``text``, ``id`` and
    ``kind`` hold decoys a reader of the default columns would take instead. Every seventh document is too short
    and one has no content; ``_expect`` says what must become of each."""
    rows = []
    for i in range(count):
        uid = first_id + i
        if i == 3:
            content, category, expect = None, "text", "invalid"
        elif i % 7 == 5:
            content, category, expect = "Too short to keep.", "text", "too_short"
        elif i % 4 == 1:
            content, category, expect = python_module(rng, 3), "code", None
        else:
            content, category, expect = prose(rng, en_sentence, lines=4), "text", None
        decoy = prose(rng, en_sentence, lines=4)
        rows.append(
            {
                "uid": uid,
                "content": content,
                "category": category,
                "text": decoy,
                "id": 10**9 + uid,
                "kind": "code" if category == "text" else "text",
                "url": f"https://example.org/{uid}",
                "_expect": expect,
            }
        )
    return rows


def table(rows: list[dict[str, Any]]) -> pa.Table:
    columns = ["uid", "content", "category", "text", "id", "kind", "url"]
    return pa.table({c: [r[c] for r in rows] for c in columns})


def check_outputs(out: Path, rows: list[dict[str, Any]], sources: dict[int, str]) -> None:
    """cleaned/ holds exactly the rows expected to stay, by ``uid``, with their ``content`` and ``category`` and the
    other columns as metadata; removed/ the others with the expected reason; ``source`` names where each came from."""
    cleaned = {r["doc_id"]: r for r in pq.read_table(out / "cleaned").to_pylist()}
    removed = {r["doc_id"]: r for r in pq.read_table(out / "removed").to_pylist()}
    assert set(cleaned) == {r["uid"] for r in rows if r["_expect"] is None}
    assert {d: r["reason"] for d, r in removed.items()} == {r["uid"]: r["_expect"] for r in rows if r["_expect"]}
    for row in rows:
        got = cleaned.get(row["uid"]) or removed[row["uid"]]
        assert (got["text"], got["kind"], got["source"]) == (row["content"], row["category"], sources[row["uid"]])
        meta = json.loads(got["meta"])
        assert (meta["text"], meta["url"]) == (row["text"], row["url"]), meta
        assert meta["id"] == row["id"] and meta["kind"] == row["kind"], meta
    report = json.loads((out / "report.json").read_text())
    assert report["accounting"] == {"input": len(rows), "cleaned": len(cleaned), "removed": len(removed)}


def test_non_default_columns_from_parquet_and_jsonl(spark, tmp_path: Path) -> None:
    """``--text-column/--id-column/--kind-column`` name the columns documents, ids and kinds come from, in Parquet
    and in JSONL; the decoy ``text``/``id``/``kind`` columns end in ``meta`` like any other column."""
    rng = random.Random(31)
    parquet_rows, jsonl_rows = records(rng, 100, 20), records(rng, 500, 20)
    pq.write_table(table(parquet_rows), tmp_path / "docs.parquet", row_group_size=6)
    jsonl = tmp_path / "docs.jsonl"
    jsonl.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "_expect"}) + "\n" for r in jsonl_rows))
    out = tmp_path / "out"
    argv = ["--input", str(tmp_path / "docs.parquet"), str(jsonl), "--output", str(out), "--stages", "filter"]
    run(PipelineConfig.from_args([*argv, *COLUMNS]), spark)
    sources = {r["uid"]: (tmp_path / "docs.parquet").as_uri() for r in parquet_rows}
    sources |= {r["uid"]: jsonl.as_uri() for r in jsonl_rows}
    check_outputs(out, parquet_rows + jsonl_rows, sources)


class FakeHub:
    """The Hub API for one dataset repository, served from a local folder (``REPO`` at commit ``COMMIT``).

    What ``huggingface_hub``'s ``HfApi``/``HfFileSystem`` and ``datasets`` ask when they read a dataset: its info,
    the listing of a folder, and files by path, whole or by byte range. Every request is recorded."""

    def __init__(self, folder: Path) -> None:
        self.files = {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*")) if p.is_file()}
        self.dirs = sorted({Path(f).parent.as_posix() for f in self.files} - {"."})
        self.requests: list[str] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def entry(self, path: str) -> dict[str, Any] | None:
        if path in self.files:
            data = self.files[path].read_bytes()
            return {"type": "file", "oid": hashlib.sha1(data).hexdigest(), "size": len(data), "path": path}
        if path in self.dirs:
            return {"type": "directory", "oid": hashlib.sha1(path.encode()).hexdigest(), "path": path}
        return None

    def info(self) -> dict[str, Any]:
        when = "2024-01-01T00:00:00.000Z"
        return {
            "_id": "0" * 24,
            "id": REPO,
            "sha": COMMIT,
            "private": False,
            "gated": False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "cardData": {},
            "createdAt": when,
            "lastModified": when,
            "siblings": [{"rfilename": f} for f in self.files],
        }

    def listing(self, base: str, recursive: bool) -> list[dict[str, Any]] | None:
        if base and base not in self.dirs:
            return None
        inside = [p for p in [*self.dirs, *self.files] if not base or p.startswith(base + "/")]
        return [self.entry(p) for p in inside if recursive or p.rpartition("/")[0] == base]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        hub = self
        api, revs = f"/api/datasets/{REPO}", f"(?:main|{COMMIT})"

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def reply(self, code: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(code)
                for key, value in {"Content-Length": str(len(body)), **headers}.items():
                    self.send_header(key, value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def json(self, obj: Any) -> None:
                self.reply(200, json.dumps(obj).encode(), {"Content-Type": "application/json"})

            def missing(self, code: str = "EntryNotFound") -> None:
                self.reply(404, json.dumps({"error": code}).encode(), {"X-Error-Code": code, "X-Error-Message": code})

            def file(self, path: str) -> None:
                data = hub.files[path].read_bytes()
                headers = {"ETag": f'"{hashlib.sha1(data).hexdigest()}"', "X-Repo-Commit": COMMIT}
                headers |= {"Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
                ranged = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", ""))
                if not ranged:
                    return self.reply(200, data, headers)
                first, last = ranged.groups()
                start = int(first) if first else max(0, len(data) - int(last))
                end = min(int(last), len(data) - 1) if first and last else len(data) - 1
                headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
                self.reply(206, data[start : end + 1], headers)

            def route(self) -> None:
                url = urlsplit(self.path)
                path, query = unquote(url.path), parse_qs(url.query)
                hub.requests.append(f"{self.command} {path}")
                if re.fullmatch(rf"{api}(?:/revision/{revs})?", path):
                    return self.json(hub.info())
                if tree := re.fullmatch(rf"{api}/tree/{revs}(?:/(.*))?", path):
                    found = hub.listing((tree.group(1) or "").strip("/"), query.get("recursive") == ["true"])
                    return self.missing() if found is None else self.json(found)
                if re.fullmatch(rf"{api}/paths-info/{revs}", path):
                    body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                    paths = parse_qs(body).get("paths") or json.loads(body or "{}").get("paths", [])
                    return self.json([e for e in map(hub.entry, paths) if e])
                if resolve := re.fullmatch(rf"/datasets/{REPO}/resolve/{revs}/(.*)", path):
                    return self.file(resolve.group(1)) if resolve.group(1) in hub.files else self.missing()
                if path.startswith(f"{api}/revision/"):
                    return self.missing("RevisionNotFound")
                return self.missing("RepoNotFound" if path.startswith(("/api/datasets/", "/datasets/")) else "")

            do_GET = do_HEAD = do_POST = route

        return Handler


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[tuple[FakeHub, dict[str, list[dict[str, Any]]]]]:
    """A Hugging Face-style dataset folder with two train shards and one test shard, served as ``REPO``."""
    rng = random.Random(32)
    splits = {"train": [records(rng, 1000, 12), records(rng, 2000, 12)], "test": [records(rng, 3000, 9)]}
    folder = tmp_path / "dataset"
    (folder / "data").mkdir(parents=True)
    for split, shards in splits.items():
        for i, rows in enumerate(shards):
            pq.write_table(table(rows), folder / "data" / f"{split}-{i:05d}-of-{len(shards):05d}.parquet")
    server = FakeHub(folder)
    try:
        yield server, {split: [r for rows in shards for r in rows] for split, shards in splits.items()}
    finally:
        server.close()


def test_hf_dataset_through_the_pipeline_cli(hub, tmp_path: Path) -> None:
    """``hf://datasets/OWNER/NAME`` (default split, train) and ``...?split=test`` through ingestion and the filter:
    every row of every shard comes out once, with the designated columns, and ``source`` names dataset, config and
    split."""
    server, rows = hub
    out = tmp_path / "out"
    uri = f"hf://datasets/{REPO}"
    env = {**os.environ, "HF_ENDPOINT": server.url, "HF_HUB_OFFLINE": "0", "HF_HOME": str(tmp_path / "hf-home")}
    env |= {"PYTHONPATH": str(ROOT), "HF_HUB_DISABLE_TELEMETRY": "1"}
    argv = [sys.executable, "-m", "spark_jobs.pipeline", "--master", "local[2]", "--driver-memory", "1g"]
    argv += ["--input", uri, f"{uri}?split=test", "--output", str(out), "--stages", "filter", *COLUMNS]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    sources = {r["uid"]: f"{uri}/default/{split}" for split, split_rows in rows.items() for r in split_rows}
    check_outputs(out, rows["train"] + rows["test"], sources)
    assert any(r.startswith(f"GET /datasets/{REPO}/resolve/") and r.endswith(".parquet") for r in server.requests)
