"""Download GitHub repositories' source files for the code reader: ``python -m spark_jobs.fetch_github``.

The seed scraped Python scripts file by file through the GitHub API, which hits rate limits after a few hundred
files. One archive per repository costs one request however many files it holds, so this fetches
``{base}/{owner}/{name}/tar.gz/{ref}`` (codeload's archive endpoint) and unpacks only the wanted files into
``OUTPUT/OWNER/NAME/<path inside repo>``, a directory the pipeline's code reader takes as ``--input``.

Reruns are cheap and safe: archives are cached in ``OUTPUT/_archives/`` (written under a temporary name, renamed
when complete, so a killed download never passes for a finished one) and a marker records each finished unpack
with the settings it used, so a rerun makes no request and unpacks again only when the ref or the filters changed.
Delete ``OUTPUT/_archives/`` to fetch a moving ref such as ``HEAD`` again.

Only the standard library (urllib, tarfile) and tqdm: this runs wherever the pipeline's Python does.
"""

from __future__ import annotations

import argparse
import email.utils
import http.client
import json
import os
import re
import shutil
import sys
import tarfile
import time
import urllib.error
import urllib.request
import zlib
from dataclasses import asdict, dataclass
from email.message import Message
from pathlib import Path
from urllib.parse import quote

from tqdm import tqdm

DEFAULT_BASE_URL = "https://codeload.github.com"
DEFAULT_REF = "HEAD"
DEFAULT_MAX_FILE_BYTES = 1_000_000  # the pipeline's own --max-file-bytes default: larger files would be removed anyway
ARCHIVES_DIR = "_archives"
CHUNK_BYTES = 1 << 20
MAX_RETRY_AFTER_S = 300.0
USER_AGENT = "slm-fetch-github"
_NAME_RE = re.compile(r"[A-Za-z0-9_.-]+")


class FetchError(Exception):
    """One repository could not be fetched; the message is the one line the user sees."""


@dataclass(frozen=True)
class RepoSpec:
    """``OWNER/NAME[@REF]`` from the command line."""

    owner: str
    name: str
    ref: str = DEFAULT_REF

    @classmethod
    def parse(cls, text: str) -> RepoSpec:
        """Validate strictly: owner and name become directory names under the output, so no ``..`` or slashes."""
        repo, _, ref = text.partition("@")
        owner, _, name = repo.partition("/")
        for part in (owner, name):
            if not _NAME_RE.fullmatch(part) or part in (".", ".."):
                raise ValueError(f"expected OWNER/NAME or OWNER/NAME@REF, got {text!r}")
        return cls(owner, name, ref or DEFAULT_REF)

    def __str__(self) -> str:
        return f"{self.owner}/{self.name}@{self.ref}"

    @property
    def key(self) -> str:
        """File-name stem for this repo's cache entries; the ref is percent-quoted since branch names hold slashes."""
        return f"{self.owner}__{self.name}__{quote(self.ref, safe='')}"


@dataclass(frozen=True)
class FetchOptions:
    """How to download and what to keep."""

    base_url: str = DEFAULT_BASE_URL
    token: str | None = None
    extensions: tuple[str, ...] = (".py",)
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    retries: int = 5
    timeout: float = 60.0
    backoff: float = 1.0


@dataclass
class RepoResult:
    """What one repository's unpack kept and left out (recorded in its marker, so reruns report it too)."""

    files: int = 0
    bytes: int = 0
    too_large: int = 0
    rejected: int = 0


def archive_url(spec: RepoSpec, base_url: str) -> str:
    return f"{base_url.rstrip('/')}/{spec.owner}/{spec.name}/tar.gz/{quote(spec.ref, safe='/')}"


def _retry_after(headers: Message) -> float | None:
    """Seconds the server asked us to wait (``Retry-After``: seconds or an HTTP date), capped."""
    value = headers.get("Retry-After")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def _stream_to(response: http.client.HTTPResponse, tmp: Path, desc: str) -> None:
    """Copy the body to ``tmp`` in chunks (archives can be large) and insist on every announced byte."""
    length = response.headers.get("Content-Length")
    total = int(length) if length and length.isdigit() else None
    received = 0
    with (
        open(tmp, "wb") as fh,
        tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc, disable=None, leave=False) as bar,
    ):
        while chunk := response.read(CHUNK_BYTES):
            fh.write(chunk)
            received += len(chunk)
            bar.update(len(chunk))
    if total is not None and received != total:
        raise http.client.IncompleteRead(b"", total - received)


def download(url: str, dest: Path, opts: FetchOptions, desc: str) -> None:
    """Download ``url`` to ``dest`` atomically, retrying what may pass (5xx, 429, rate-limit 403, network errors).

    Other HTTP errors (404: no such repo or ref, or a private one without a token) fail at once: retrying cannot
    help, and the user should hear about it before the backoff has run its course.
    """
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if opts.token:
        # Unredirected: the token goes to the host we were given, never to wherever a redirect points.
        request.add_unredirected_header("Authorization", f"Bearer {opts.token}")
    tmp = dest.with_name(f"{dest.name}.part-{os.getpid()}")
    for attempt in range(opts.retries + 1):
        wait = None
        try:
            with urllib.request.urlopen(request, timeout=opts.timeout) as response:
                _stream_to(response, tmp, desc)
            os.replace(tmp, dest)
            return
        except urllib.error.HTTPError as e:
            e.close()
            retryable = e.code >= 500 or e.code == 429 or (e.code == 403 and "Retry-After" in e.headers)
            problem = f"HTTP {e.code} {e.reason}"
            if e.code == 404:
                problem += " (no such repository or ref, or a private one: set GITHUB_TOKEN)"
            if not retryable:
                raise FetchError(f"{problem} from {url}") from None
            wait = _retry_after(e.headers)
        except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
            problem = str(getattr(e, "reason", None) or e) or type(e).__name__
        finally:
            tmp.unlink(missing_ok=True)
        if attempt == opts.retries:
            raise FetchError(f"{problem} from {url} (gave up after {opts.retries + 1} attempts)")
        wait = opts.backoff * 2**attempt if wait is None else wait
        print(f"{desc}: {problem}; retrying in {wait:.1f}s", file=sys.stderr)
        time.sleep(wait)


def _is_unsafe(name: str) -> bool:
    """Absolute paths and ``..`` are refused outright (not silently re-rooted) before the ``data`` filter runs."""
    return name.startswith("/") or ".." in name.split("/")


def unpack(archive: Path, dest: Path, opts: FetchOptions, desc: str) -> RepoResult:
    """Extract the wanted files of ``archive`` into ``dest``, dropping the archive's top-level folder.

    Reads the archive as a stream (one pass, nothing held in memory) into a fresh directory next to the cache and
    swaps it in at the end, so ``dest`` holds exactly one ref's files and never a half-finished unpack. Links,
    absolute paths and ``..`` are rejected (and tarfile's ``data`` filter guards the rest); files over the size limit
    are skipped, since the pipeline would only drop them as invalid.
    """
    result = RepoResult()
    staging = archive.with_name(f"{archive.name}.unpacking-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        with tarfile.open(archive, "r|gz") as tar:
            for member in tar:
                rel = member.name.split("/", 1)[1] if "/" in member.name else ""  # "" for the top folder itself
                if not rel or not rel.lower().endswith(opts.extensions):
                    continue
                if member.issym() or member.islnk() or _is_unsafe(member.name):
                    result.rejected += 1
                    print(f"{desc}: rejected link or unsafe path {member.name!r}", file=sys.stderr)
                    continue
                if not member.isfile():
                    continue
                if member.size > opts.max_file_bytes:
                    result.too_large += 1
                    continue
                try:
                    tar.extract(member.replace(name=rel, deep=False), staging, filter="data")
                except tarfile.FilterError as e:
                    result.rejected += 1
                    print(f"{desc}: rejected {member.name!r}: {e}", file=sys.stderr)
                    continue
                result.files += 1
                result.bytes += member.size
        shutil.rmtree(dest, ignore_errors=True)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return result


def fetch_repo(spec: RepoSpec, output: Path, opts: FetchOptions) -> tuple[RepoResult, str]:
    """Download (unless cached) and unpack (unless done with the same settings) one repository.

    Returns what the unpack kept and what happened: ``downloaded``, ``unpacked from cache`` or ``already fetched``.
    """
    archives = output / ARCHIVES_DIR
    archives.mkdir(parents=True, exist_ok=True)
    archive = archives / f"{spec.key}.tar.gz"
    marker = archives / f"{spec.owner}__{spec.name}.unpacked.json"
    dest = output / spec.owner / spec.name
    settings = {"ref": spec.ref, "extensions": list(opts.extensions), "max_file_bytes": opts.max_file_bytes}

    downloaded = False
    if not archive.exists():
        download(archive_url(spec, opts.base_url), archive, opts, str(spec))
        downloaded = True
    if not downloaded and marker.exists() and dest.is_dir():
        done = json.loads(marker.read_text())
        if done.get("settings") == settings:
            return RepoResult(**done["result"]), "already fetched"
    marker.unlink(missing_ok=True)
    try:
        result = unpack(archive, dest, opts, str(spec))
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise FetchError(f"cannot unpack {archive}: {e} (delete it to download again)") from None
    tmp_marker = marker.with_name(marker.name + ".tmp")
    tmp_marker.write_text(json.dumps({"settings": settings, "result": asdict(result)}, indent=1))
    os.replace(tmp_marker, marker)
    return result, "downloaded" if downloaded else "unpacked from cache"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m spark_jobs.fetch_github",
        description="Download GitHub repository archives and unpack their source files for the code reader.",
    )
    p.add_argument("--repos", nargs="+", required=True, metavar="OWNER/NAME[@REF]", help="repositories (ref: HEAD)")
    p.add_argument("--output", required=True, help="directory; files land in OUTPUT/OWNER/NAME/<path in repo>")
    p.add_argument("--extensions", nargs="+", default=[".py"], help="file extensions to keep (default: .py)")
    p.add_argument(
        "--base-url",
        default=os.environ.get("GITHUB_BASE_URL", DEFAULT_BASE_URL),
        help="archive server, fetched as {base}/{owner}/{name}/tar.gz/{ref} (env GITHUB_BASE_URL; default %(default)s)",
    )
    p.add_argument("--max-file-bytes", type=int, default=DEFAULT_MAX_FILE_BYTES, help="skip larger files")
    p.add_argument("--retries", type=int, default=5, help="retries on 5xx/429/network errors (default %(default)s)")
    p.add_argument("--timeout", type=float, default=60.0, help="socket timeout in seconds (default %(default)s)")
    p.add_argument("--backoff", type=float, default=1.0, help="first retry delay in seconds, doubling each time")
    args = p.parse_args(argv)
    try:
        args.repos = [RepoSpec.parse(r) for r in args.repos]
    except ValueError as e:
        p.error(str(e))
    seen = [(s.owner, s.name) for s in args.repos]
    if len(set(seen)) != len(seen):
        p.error("each repository may be named once (they unpack to OUTPUT/OWNER/NAME)")
    if args.retries < 0 or args.max_file_bytes < 0 or args.timeout <= 0 or args.backoff < 0:
        p.error("--retries, --max-file-bytes and --backoff must be >= 0, --timeout > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    """Fetch every repository, keep going past failures, and exit non-zero if any failed."""
    args = parse_args(argv)
    opts = FetchOptions(
        base_url=args.base_url,
        token=os.environ.get("GITHUB_TOKEN") or None,
        extensions=tuple(e.lower() if e.startswith(".") else "." + e.lower() for e in args.extensions),
        max_file_bytes=args.max_file_bytes,
        retries=args.retries,
        timeout=args.timeout,
        backoff=args.backoff,
    )
    output = Path(args.output)
    total = RepoResult()
    failed: list[str] = []
    for spec in args.repos:
        try:
            r, state = fetch_repo(spec, output, opts)
        except FetchError as e:
            failed.append(str(spec))
            print(f"error: {spec}: {e}", file=sys.stderr)
            continue
        extra = f", {r.too_large} over {opts.max_file_bytes} bytes skipped" if r.too_large else ""
        extra += f", {r.rejected} unsafe members rejected" if r.rejected else ""
        print(f"{spec}: {r.files} files, {r.bytes} bytes ({state}{extra})")
        total.files += r.files
        total.bytes += r.bytes
    ok = len(args.repos) - len(failed)
    print(f"fetched {ok}/{len(args.repos)} repos: {total.files} files, {total.bytes} bytes under {output}")
    if failed:
        print(f"failed: {' '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
