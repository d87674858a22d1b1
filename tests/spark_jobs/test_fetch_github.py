"""fetch_github against a local HTTP server that plays codeload: real downloads, retries, errors and caching."""

from __future__ import annotations

import io
import random
import tarfile
import threading
import time
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from spark_jobs import fetch_github
from spark_jobs.fetch_github import MAX_WAIT_S, FetchError, FetchOptions, RepoSpec, main

TOP = "repo-0123abc"  # GitHub archives wrap everything in one "<name>-<sha>" folder
LIMIT = 2000


def _add(tar: tarfile.TarFile, name: str, data: bytes = b"", **kw: object) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for key, value in kw.items():
        setattr(info, key, value)
    tar.addfile(info, io.BytesIO(data) if data else None)


def make_archive() -> bytes:
    """A fake repository: wanted .py files (one nested), a .txt, an oversized .py, and hostile members."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        _add(tar, TOP, type=tarfile.DIRTYPE, mode=0o755)
        _add(tar, f"{TOP}/setup.py", b"from setuptools import setup\nsetup()\n")
        _add(tar, f"{TOP}/README.txt", b"not code\n")
        _add(tar, f"{TOP}/pkg", type=tarfile.DIRTYPE, mode=0o755)
        _add(tar, f"{TOP}/pkg/sub", type=tarfile.DIRTYPE, mode=0o755)
        _add(tar, f"{TOP}/pkg/sub/mod.py", b"def f():\n    return 1\n")
        _add(tar, f"{TOP}/pkg/big.py", b"x = 1\n" * LIMIT)
        _add(tar, f"{TOP}/pkg/link.py", type=tarfile.SYMTYPE, linkname="/etc/passwd")
        _add(tar, f"{TOP}/../../escape.py", b"print('escaped')\n")
        _add(tar, "/abs/evil.py", b"print('absolute')\n")
    return buf.getvalue()


ARCHIVE = make_archive()


@dataclass
class Server:
    """Behaviour per request path (a list of status codes to answer before succeeding, the Retry-After they carry,
    an archive other than ARCHIVE, no Content-Length) and a log of requests."""

    url: str = ""
    failures: dict[str, list[int]] = field(default_factory=dict)
    retry_after: dict[str, str] = field(default_factory=dict)
    archives: dict[str, bytes] = field(default_factory=dict)
    unannounced: set[str] = field(default_factory=set)
    requests: list[tuple[str, str | None]] = field(default_factory=list)

    def paths(self) -> list[str]:
        return [p for p, _ in self.requests]


@pytest.fixture
def server() -> Iterator[Server]:
    state = Server()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            state.requests.append((self.path, self.headers.get("Authorization")))
            if self.path.startswith("/missing/"):
                self.send_error(404)
                return
            pending = state.failures.get(self.path)
            if pending:
                self.send_response(pending.pop(0))
                self.send_header("Retry-After", state.retry_after.get(self.path, "0"))
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = state.archives.get(self.path, ARCHIVE)
            self.send_response(200)
            self.send_header("Content-Type", "application/x-gzip")
            if self.path not in state.unannounced:  # HTTP/1.0: without a length, the body ends when the server closes
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield state
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def run(server: Server, out: Path, *repos: str, extra: tuple[str, ...] = ()) -> int:
    argv = [
        "--repos",
        *repos,
        "--output",
        str(out),
        "--base-url",
        server.url,
        "--max-file-bytes",
        str(LIMIT),
        "--backoff",
        "0.01",
        "--timeout",
        "10",
        *extra,
    ]
    return main(argv)


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_unpacks_wanted_files_only(server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(server, tmp_path, "octo/repo") == 0
    repo = tmp_path / "octo" / "repo"
    assert files_under(repo) == {"setup.py", "pkg/sub/mod.py"}
    assert (repo / "pkg/sub/mod.py").read_bytes() == b"def f():\n    return 1\n"
    assert not (tmp_path / "escape.py").exists() and not (tmp_path.parent / "escape.py").exists()
    assert server.paths() == ["/octo/repo/tar.gz/HEAD"]
    assert (tmp_path / "_archives" / "octo__repo__HEAD.tar.gz").read_bytes() == ARCHIVE
    assert not list((tmp_path / "_archives").glob("*.part-*")), "no temporary download left behind"
    captured = capsys.readouterr()
    assert "octo/repo@HEAD: 2 files" in captured.out
    assert "1 over 2000 bytes skipped" in captured.out
    assert "3 unsafe members rejected" in captured.out  # the symlink, the '..' path and the absolute path
    assert "fetched 1/1 repos: 2 files" in captured.out


def test_token_ref_and_env_base_url(server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", "s3cret")
    monkeypatch.setenv("GITHUB_BASE_URL", server.url)
    assert main(["--repos", "octo/repo@v1.2", "--output", str(tmp_path)]) == 0
    assert server.requests == [("/octo/repo/tar.gz/v1.2", "Bearer s3cret")]
    assert (tmp_path / "_archives" / "octo__repo__v1.2.tar.gz").exists()


def test_no_token_no_header(server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    assert run(server, tmp_path, "octo/repo") == 0
    assert server.requests == [("/octo/repo/tar.gz/HEAD", None)]


def test_retries_5xx_then_succeeds(server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    server.failures["/flaky/repo/tar.gz/HEAD"] = [503, 503]
    assert run(server, tmp_path, "flaky/repo") == 0
    assert server.paths() == ["/flaky/repo/tar.gz/HEAD"] * 3
    assert files_under(tmp_path / "flaky" / "repo") == {"setup.py", "pkg/sub/mod.py"}
    assert capsys.readouterr().err.count("HTTP 503") == 2


def test_gives_up_after_retries(server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    server.failures["/down/repo/tar.gz/HEAD"] = [500, 429, 502]
    assert run(server, tmp_path, "down/repo", extra=("--retries", "2")) == 1
    assert len(server.requests) == 3
    assert "gave up after 3 attempts" in capsys.readouterr().err
    assert not (tmp_path / "_archives" / "down__repo__HEAD.tar.gz").exists()


def test_404_is_reported_and_others_still_fetched(
    server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(server, tmp_path, "missing/repo", "octo/repo") == 1
    assert server.paths() == ["/missing/repo/tar.gz/HEAD", "/octo/repo/tar.gz/HEAD"]  # 404: no retry
    assert files_under(tmp_path / "octo" / "repo") == {"setup.py", "pkg/sub/mod.py"}
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert errors[0].startswith("error: missing/repo@HEAD: HTTP 404")
    assert "fetched 1/2 repos" in captured.out


def test_rerun_makes_no_request(server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(server, tmp_path, "octo/repo") == 0
    assert run(server, tmp_path, "octo/repo") == 0
    assert len(server.requests) == 1
    rerun_line = capsys.readouterr().out.splitlines()[-2]
    assert rerun_line.startswith("octo/repo@HEAD: 2 files, ") and "(already fetched" in rerun_line
    # New filters re-unpack from the cached archive, still without a request.
    assert run(server, tmp_path, "octo/repo", extra=("--extensions", ".txt")) == 0
    assert len(server.requests) == 1
    assert files_under(tmp_path / "octo" / "repo") == {"README.txt"}


def test_interrupted_download_leaves_no_archive(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(response: object, tmp: Path, desc: str, max_bytes: int) -> None:
        tmp.write_bytes(ARCHIVE[:10])
        raise ConnectionResetError("connection reset mid-download")

    monkeypatch.setattr(fetch_github, "_stream_to", broken)
    assert run(server, tmp_path, "octo/repo", extra=("--retries", "1")) == 1
    assert len(server.requests) == 2
    assert not list((tmp_path / "_archives").iterdir())


@pytest.mark.parametrize(
    "bad",
    [
        "octo",
        "octo/",
        "../x",
        "a/b/c",
        "octo/..",
        "-octo/repo",
        "oc_to/repo",
        "o" * 40 + "/repo",
        "octo/re po",
        "octo/" + "r" * 101,
        "octo/repo@../other",
        "octo/repo@a..b",
        "octo/repo@/abs",
        "octo/repo@trailing/",
        "octo/repo@a//b",
        "octo/repo@back\\slash",
        "octo/repo@nul\x00",
        "octo/repo@tab\tref",
        "octo/repo@bidi\u202e",
        "octo/repo@.hidden",
        "octo/repo@x.lock",
        "octo/repo@x.",
        "octo/repo@a@{1}",
        "octo/repo@a~1",
        "octo/repo@a:b",
        "octo/repo@" + "x" * 81,
    ],
)
def test_rejects_bad_repo_names(bad: str) -> None:
    with pytest.raises(ValueError):
        RepoSpec.parse(bad)


def test_refusals_are_one_line_before_any_request(
    server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A ref like ../other must not fetch octo/other's archive and cache it as octo/repo's."""
    for repos, extra, message in [
        (["octo/repo@../other"], (), "error: invalid ref '../other' in 'octo/repo@../other'"),
        (["octo/repo", "octo/repo@v1"], (), "error: each repository may be named once"),
        (["octo/repo"], ("--max-files", "0"), "error: --max-files must be >= 1, got 0"),
        (["octo/repo"], ("--base-url", "file:///etc"), "error: --base-url must be an http:// or https:// URL"),
    ]:
        assert run(server, tmp_path, *repos, extra=extra) == 2
        captured = capsys.readouterr()
        assert captured.err.startswith(message) and len(captured.err.splitlines()) == 1, captured.err
        assert captured.out == ""
    assert server.requests == []
    assert not tmp_path.exists() or not list(tmp_path.iterdir())


def test_repo_spec_parse() -> None:
    assert RepoSpec.parse("octo/repo") == RepoSpec("octo", "repo", "HEAD")
    assert RepoSpec.parse("Octo-Cat/my.repo_2@release-1.0@rc").ref == "release-1.0@rc"
    spec = RepoSpec.parse("octo/repo@feature/x")
    assert spec.ref == "feature/x"
    assert fetch_github.archive_url(spec, "https://h/") == "https://h/octo/repo/tar.gz/feature/x"
    assert "/" not in spec.key


def test_archive_over_the_limit_stops_and_is_not_cached(
    server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Refused on the announced length before reading, or while streaming when there is none; never retried."""
    server.unannounced.add("/quiet/repo/tar.gz/HEAD")
    limit = str(len(ARCHIVE) - 1)
    assert run(server, tmp_path, "loud/repo", "quiet/repo", extra=("--max-archive-bytes", limit)) == 1
    assert server.paths() == ["/loud/repo/tar.gz/HEAD", "/quiet/repo/tar.gz/HEAD"]
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: loud/repo@HEAD: archive over --max-archive-bytes {limit} (Content-Length {len(ARCHIVE)}); "
        "not downloaded",
        f"error: quiet/repo@HEAD: archive over --max-archive-bytes {limit}; download stopped",
    ]
    assert not list((tmp_path / "_archives").iterdir()), "no archive and no partial download kept"
    assert not (tmp_path / "loud").exists() and not (tmp_path / "quiet").exists()
    assert run(server, tmp_path, "quiet/repo", extra=("--max-archive-bytes", str(len(ARCHIVE)))) == 0


def test_unpack_limits_fail_the_repository_and_leave_no_tree(
    server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = tmp_path / "octo" / "repo"
    marker = tmp_path / "_archives" / "octo__repo.unpacked.json"
    assert run(server, tmp_path, "octo/repo") == 0 and files_under(repo) == {"setup.py", "pkg/sub/mod.py"}
    capsys.readouterr()
    # setup.py (37 bytes) and mod.py (22 bytes): two files, 59 bytes
    for flag, value, message in [
        ("--max-files", "1", "more than --max-files 1 files to unpack"),
        ("--max-unpacked-bytes", "58", "more than --max-unpacked-bytes 58 bytes to unpack"),
    ]:
        assert run(server, tmp_path, "octo/repo", extra=(flag, value)) == 1
        errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
        assert errors == [f"error: octo/repo@HEAD: {message}"]
        assert not repo.exists() and not marker.exists(), "neither the earlier tree nor a marker a rerun would trust"
        assert not list((tmp_path / "_archives").glob("*.unpacking-*"))
    assert run(server, tmp_path, "octo/repo", extra=("--max-files", "2", "--max-unpacked-bytes", "59")) == 0
    assert files_under(repo) == {"setup.py", "pkg/sub/mod.py"}
    assert "(unpacked from cache" in capsys.readouterr().out
    assert len(server.requests) == 1, "the cached archive served every rerun"


def unpack_peak(tmp_path: Path, members: int) -> int:
    """Peak traced memory of unpacking an archive of ``members`` unwanted files and one wanted file.

    Names and times are random so that headers compress like real ones: a run of near-identical headers would
    inflate each 16 KB read of the gzip stream into megabytes, and that buffer, not the members, would be measured.
    """
    rng = random.Random(members)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        _add(tar, TOP, type=tarfile.DIRTYPE, mode=0o755)
        for _ in range(members):
            _add(tar, f"{TOP}/docs/{rng.getrandbits(160):040x}.txt", mtime=rng.getrandbits(31))
        _add(tar, f"{TOP}/last.py", b"x = 1\n")
    archive = tmp_path / f"{members}.tar.gz"
    archive.write_bytes(buf.getvalue())
    tracemalloc.start()
    try:
        result = fetch_github.unpack(archive, tmp_path / str(members), FetchOptions(), "many")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.files == 1 and files_under(tmp_path / str(members)) == {"last.py"}
    return peak


def test_unpack_memory_does_not_grow_with_the_member_count(tmp_path: Path) -> None:
    """tarfile keeps every member it has read in ``tar.members``, even in stream mode, unless the reader empties
    it: about 500 bytes a member, 1.5 MB more for the larger archive here."""
    unpack_peak(tmp_path, 10)  # first use: one-time allocations (lazy imports, caches) are not what is measured
    small = unpack_peak(tmp_path, 1000)
    growth = unpack_peak(tmp_path, 4000) - small
    assert growth < 300_000, f"peak grew by {growth} bytes for 3000 more members: members are being kept"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2.5", 2.5),
        ("0", 0.0),
        ("1e9", MAX_WAIT_S),
        ("nan", None),
        ("NaN", None),
        ("inf", None),
        ("-5", None),
        ("soon", None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", None),  # in the past
        ("Fri, 31 Dec 9999 23:59:59 GMT", MAX_WAIT_S),
    ],
)
def test_retry_after_values(value: str, expected: float | None) -> None:
    headers = Message()
    headers["Retry-After"] = value
    assert fetch_github._retry_after(headers) == expected


def test_unusable_retry_after_falls_back_to_backoff(
    server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server.failures["/flaky/repo/tar.gz/HEAD"] = [503, 429]
    server.retry_after["/flaky/repo/tar.gz/HEAD"] = "nan"
    started = time.monotonic()
    assert run(server, tmp_path, "flaky/repo") == 0
    assert time.monotonic() - started < 5
    assert len(server.requests) == 3
    err = capsys.readouterr().err
    assert "retrying in 0.0s" in err and "retrying in nan" not in err


def test_token_only_over_https_or_to_loopback(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert FetchOptions(base_url="https://codeload.github.com", token="s3cret").token == "s3cret"
    for loopback in ("http://127.0.0.1:8000", "http://127.9.9.9", "http://localhost:8000", "http://[::1]:8000"):
        assert FetchOptions(base_url=loopback, token="s3cret").token == "s3cret"
    assert capsys.readouterr().err == ""
    assert FetchOptions(base_url="http://example.com", token="s3cret").token is None
    assert FetchOptions(base_url="http://10.0.0.1:8000", token="s3cret").token is None
    warnings = capsys.readouterr().err.splitlines()
    assert len(warnings) == 2 and warnings[0].startswith("warning: GITHUB_TOKEN not sent: http://example.com")
    # A real request through another spelling of the loopback host still carries it.
    monkeypatch.setenv("GITHUB_TOKEN", "s3cret")
    assert run(server, tmp_path, "octo/repo", extra=("--base-url", server.url.replace("127.0.0.1", "localhost"))) == 0
    assert server.requests == [("/octo/repo/tar.gz/HEAD", "Bearer s3cret")]


def test_fetch_error_is_not_retried() -> None:
    assert not issubclass(FetchError, OSError), "download() retries OSError; a FetchError must end the attempts"
