"""fetch_github against a local HTTP server that plays codeload: real downloads, retries, errors and caching."""

from __future__ import annotations

import io
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from spark_jobs import fetch_github
from spark_jobs.fetch_github import RepoSpec, main

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
    """Behaviour per request path (a list of status codes to answer before succeeding) and a log of requests."""

    url: str = ""
    failures: dict[str, list[int]] = field(default_factory=dict)
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
                self.send_header("Retry-After", "0")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/x-gzip")
            self.send_header("Content-Length", str(len(ARCHIVE)))
            self.end_headers()
            self.wfile.write(ARCHIVE)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
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
    def broken(response: object, tmp: Path, desc: str) -> None:
        tmp.write_bytes(ARCHIVE[:10])
        raise ConnectionResetError("connection reset mid-download")

    monkeypatch.setattr(fetch_github, "_stream_to", broken)
    assert run(server, tmp_path, "octo/repo", extra=("--retries", "1")) == 1
    assert len(server.requests) == 2
    assert not list((tmp_path / "_archives").iterdir())


@pytest.mark.parametrize("bad", ["octo", "octo/", "../x", "a/b/c", "octo/.."])
def test_rejects_bad_repo_names(bad: str) -> None:
    with pytest.raises(ValueError):
        RepoSpec.parse(bad)


def test_repo_spec_parse() -> None:
    assert RepoSpec.parse("octo/repo") == RepoSpec("octo", "repo", "HEAD")
    spec = RepoSpec.parse("octo/repo@feature/x")
    assert spec.ref == "feature/x"
    assert fetch_github.archive_url(spec, "https://h/") == "https://h/octo/repo/tar.gz/feature/x"
    assert "/" not in spec.key
