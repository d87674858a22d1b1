"""Download GitHub repositories' source files for the code reader: ``python -m spark_jobs.fetch_github``.

The seed scraped Python scripts file by file through the GitHub API, which hits rate limits after a few hundred
files. One archive per repository costs one request however many files it holds, so this fetches
``{base}/{owner}/{name}/tar.gz/{ref}`` (codeload's archive endpoint) and unpacks only the wanted files into
``OUTPUT/OWNER/NAME/<path inside repo>``, a directory the pipeline's code reader takes as ``--input``.

Reruns are cheap and safe: archives are cached in ``OUTPUT/_archives/`` (written under a temporary name, renamed
when complete, so a killed download never passes for a finished one) and a marker records each finished unpack
with the settings it used, so a rerun makes no request and unpacks again only when the ref or the filters changed.
Delete ``OUTPUT/_archives/`` to fetch a moving ref such as ``HEAD`` again.

Archives come from the network, so every size is bounded (``--max-archive-bytes``, ``--max-unpacked-bytes``,
``--max-files``): going over one fails that repository with one line and leaves no tree of it under OUTPUT. Names
are checked before any request (GitHub's characters for owner and name, git's rules for the ref), and
``GITHUB_TOKEN`` only travels over https (or plain http to a loopback host, for local test servers).

Only the standard library (urllib, tarfile) and tqdm: this runs wherever the pipeline's Python does.
"""

from __future__ import annotations

import argparse
import email.utils
import http.client
import ipaddress
import json
import math
import os
import re
import shutil
import sys
import tarfile
import time
import unicodedata
import urllib.error
import urllib.request
import zlib
from dataclasses import asdict, dataclass
from email.message import Message
from pathlib import Path
from urllib.parse import quote, urlsplit

from tqdm import tqdm

DEFAULT_BASE_URL = "https://codeload.github.com"
DEFAULT_REF = "HEAD"
DEFAULT_MAX_FILE_BYTES = 1_000_000  # the pipeline's own --max-file-bytes default: larger files would be removed anyway
DEFAULT_MAX_ARCHIVE_BYTES = 1 << 30  # 1 GiB of tar.gz: far above a typical source repository's archive
DEFAULT_MAX_UNPACKED_BYTES = 2 << 30  # 2 GiB of kept files per repository
DEFAULT_MAX_FILES = 100_000  # kept files per repository
ARCHIVES_DIR = "_archives"
CHUNK_BYTES = 1 << 20
MAX_WAIT_S = 300.0  # the longest pause between attempts, whatever Retry-After or the backoff say
USER_AGENT = "slm-fetch-github"
_OWNER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,38}")  # GitHub user and organisation names
_NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,100}")  # GitHub repository names
_REF_FORBIDDEN = re.compile(r"\.\.|@\{|//|[ ~^:?*\[\\]")  # git check-ref-format, with control characters below
MAX_REF_CHARS = 80  # percent-encoded, the ref is part of a cache file name (255 bytes at most on most file systems)
LOOPBACK_NAMES = ("localhost",)


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
        """Validate strictly: owner and name become directory names under the output, so no ``..`` or slashes, and
        the ref becomes part of the URL path, so nothing that could step out of ``{owner}/{name}/tar.gz/``."""
        repo, _, ref = text.partition("@")
        owner, _, name = repo.partition("/")
        if not _OWNER_RE.fullmatch(owner) or not _NAME_RE.fullmatch(name) or name in (".", ".."):
            raise ValueError(
                f"expected OWNER/NAME or OWNER/NAME@REF (owner: letters, digits and '-'; name: letters, digits, "
                f"'.', '_' and '-'), got {text!r}"
            )
        if ref and not valid_ref(ref):
            raise ValueError(
                f"invalid ref {ref!r} in {text!r}: git refs hold no '..', '@{{', '//', spaces, control characters "
                f"or any of ~^:?*[\\, neither start nor end with '/' or end with '.', and no part starts with '.' "
                f"or ends with '.lock' (at most {MAX_REF_CHARS} characters once percent-encoded)"
            )
        return cls(owner, name, ref or DEFAULT_REF)

    def __str__(self) -> str:
        return f"{self.owner}/{self.name}@{self.ref}"

    @property
    def key(self) -> str:
        """File-name stem for this repo's cache entries; the ref is percent-quoted since branch names hold slashes."""
        return f"{self.owner}__{self.name}__{quote(self.ref, safe='')}"


def valid_ref(ref: str) -> bool:
    """Whether ``ref`` is a name ``git check-ref-format --allow-onelevel`` accepts (and short enough to cache)."""
    parts = ref.split("/")
    return not (
        _REF_FORBIDDEN.search(ref)
        or any(unicodedata.category(c).startswith("C") for c in ref)  # control, format and unassigned characters
        or ref == "@"
        or ref.endswith(".")
        or any(not part or part.startswith(".") or part.endswith(".lock") for part in parts)
        or len(quote(ref, safe="")) > MAX_REF_CHARS
    )


def may_carry_token(url: str) -> bool:
    """https anywhere; plain http only to this machine (the tests' local server), where nobody can listen in."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        return True
    host = parts.hostname or ""
    if parts.scheme != "http":
        return False
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class FetchOptions:
    """How to download, what to keep and the bounds on both; checked when made (``ValueError`` on bad values)."""

    base_url: str = DEFAULT_BASE_URL
    token: str | None = None
    extensions: tuple[str, ...] = (".py",)
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    max_archive_bytes: int = DEFAULT_MAX_ARCHIVE_BYTES
    max_unpacked_bytes: int = DEFAULT_MAX_UNPACKED_BYTES
    max_files: int = DEFAULT_MAX_FILES
    retries: int = 5
    timeout: float = 60.0
    backoff: float = 1.0

    def __post_init__(self) -> None:
        """Refuse unusable values, and drop the token (with one warning) where it would cross the network in clear."""
        if urlsplit(self.base_url).scheme not in ("http", "https") or not urlsplit(self.base_url).hostname:
            raise ValueError(f"--base-url must be an http:// or https:// URL, got {self.base_url!r}")
        if self.retries < 0 or self.max_file_bytes < 0 or self.backoff < 0 or not self.timeout > 0:
            raise ValueError("--retries, --max-file-bytes and --backoff must be >= 0, --timeout > 0")
        for flag in ("max_archive_bytes", "max_unpacked_bytes", "max_files"):
            if getattr(self, flag) < 1:
                raise ValueError(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(self, flag)}")
        if self.token and not may_carry_token(self.base_url):
            print(
                f"warning: GITHUB_TOKEN not sent: {self.base_url} is plain http (the token goes over https only, "
                "or to a loopback host)",
                file=sys.stderr,
            )
            object.__setattr__(self, "token", None)


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
    """Seconds the server asked us to wait (``Retry-After``: seconds or an HTTP date), capped at ``MAX_WAIT_S``.

    ``None`` (the normal backoff applies) for a value that is not a usable wait: unparsable, negative, a date in the
    past, NaN or infinite. A server's header must never crash the run or stall it for hours.
    """
    value = headers.get("Retry-After")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return min(seconds, MAX_WAIT_S)


def _stream_to(response: http.client.HTTPResponse, tmp: Path, desc: str, max_bytes: int) -> None:
    """Copy the body to ``tmp`` in chunks (archives can be large) and insist on every announced byte.

    More than ``max_bytes`` (announced or received) stops the download with a ``FetchError``, which is not retried.
    """
    length = response.headers.get("Content-Length")
    total = int(length) if length and length.isdigit() else None
    too_big = f"archive over --max-archive-bytes {max_bytes}"
    if total is not None and total > max_bytes:
        raise FetchError(f"{too_big} (Content-Length {total}); not downloaded")
    received = 0
    with (
        open(tmp, "wb") as fh,
        tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc, disable=None, leave=False) as bar,
    ):
        while chunk := response.read(CHUNK_BYTES):
            received += len(chunk)
            if received > max_bytes:
                raise FetchError(f"{too_big}; download stopped")
            fh.write(chunk)
            bar.update(len(chunk))
    if total is not None and received != total:
        raise http.client.IncompleteRead(b"", total - received)


def download(url: str, dest: Path, opts: FetchOptions, desc: str) -> None:
    """Download ``url`` to ``dest`` atomically, retrying what may pass (5xx, 429, rate-limit 403, network errors).

    Other HTTP errors (404: no such repo or ref, or a private one without a token) fail at once: retrying cannot
    help, and the user should hear about it before the backoff has run its course. So does an archive over
    ``max_archive_bytes``. Waits between attempts are capped at ``MAX_WAIT_S``.
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
                _stream_to(response, tmp, desc, opts.max_archive_bytes)
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
        wait = min(opts.backoff * 2 ** min(attempt, 30) if wait is None else wait, MAX_WAIT_S)
        print(f"{desc}: {problem}; retrying in {wait:.1f}s", file=sys.stderr)
        time.sleep(wait)


def _is_unsafe(name: str) -> bool:
    """Absolute paths and ``..`` are refused outright (not silently re-rooted) before the ``data`` filter runs."""
    return name.startswith("/") or ".." in name.split("/")


def unpack(archive: Path, dest: Path, opts: FetchOptions, desc: str) -> RepoResult:
    """Extract the wanted files of ``archive`` into ``dest``, dropping the archive's top-level folder.

    Reads the archive as a stream (one pass; ``tar.members``, which tarfile grows even in stream mode, is emptied at
    each member, so memory stays flat however many members there are) into a fresh directory next to the cache and
    swaps it in at the end, so ``dest`` holds exactly one ref's files and never a half-finished unpack. Links,
    absolute paths and ``..`` are rejected (and tarfile's ``data`` filter guards the rest); files over the size limit
    are skipped, since the pipeline would only drop them as invalid. More kept files than ``max_files``, or more
    kept bytes than ``max_unpacked_bytes``, raise ``FetchError`` before the first file over the bound is written.
    """
    result = RepoResult()
    staging = archive.with_name(f"{archive.name}.unpacking-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        with tarfile.open(archive, "r|gz") as tar:
            for member in tar:
                tar.members.clear()
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
                if result.files + 1 > opts.max_files:
                    raise FetchError(f"more than --max-files {opts.max_files} files to unpack")
                if result.bytes + member.size > opts.max_unpacked_bytes:
                    raise FetchError(f"more than --max-unpacked-bytes {opts.max_unpacked_bytes} bytes to unpack")
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
    A failed unpack also removes the repository's earlier tree, so OUTPUT holds no files the last run did not vouch
    for; the cached archive stays (a rerun with larger bounds needs no new download).
    """
    archives = output / ARCHIVES_DIR
    archives.mkdir(parents=True, exist_ok=True)
    archive = archives / f"{spec.key}.tar.gz"
    marker = archives / f"{spec.owner}__{spec.name}.unpacked.json"
    dest = output / spec.owner / spec.name
    settings = {
        "ref": spec.ref,
        "extensions": list(opts.extensions),
        "max_file_bytes": opts.max_file_bytes,
        "max_unpacked_bytes": opts.max_unpacked_bytes,
        "max_files": opts.max_files,
    }

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
    except FetchError:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        shutil.rmtree(dest, ignore_errors=True)
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
    p.add_argument(
        "--max-file-bytes", type=int, default=DEFAULT_MAX_FILE_BYTES, help="skip larger files (default %(default)s)"
    )
    p.add_argument(
        "--max-archive-bytes",
        type=int,
        default=DEFAULT_MAX_ARCHIVE_BYTES,
        help="fail a repository whose archive is larger; the download stops there (default %(default)s: 1 GiB)",
    )
    p.add_argument(
        "--max-unpacked-bytes",
        type=int,
        default=DEFAULT_MAX_UNPACKED_BYTES,
        help="fail a repository whose kept files add up to more (default %(default)s: 2 GiB)",
    )
    p.add_argument(
        "--max-files",
        type=int,
        default=DEFAULT_MAX_FILES,
        help="fail a repository with more kept files (default %(default)s)",
    )
    p.add_argument("--retries", type=int, default=5, help="retries on 5xx/429/network errors (default %(default)s)")
    p.add_argument("--timeout", type=float, default=60.0, help="socket timeout in seconds (default %(default)s)")
    p.add_argument(
        "--backoff",
        type=float,
        default=1.0,
        help=f"first retry delay in seconds, doubling each time, at most {MAX_WAIT_S:g} (default %(default)s)",
    )
    return p.parse_args(argv)


def parse_repos(texts: list[str]) -> list[RepoSpec]:
    """Each ``OWNER/NAME[@REF]`` checked, and each repository named once (they unpack to OUTPUT/OWNER/NAME)."""
    specs = [RepoSpec.parse(text) for text in texts]
    seen = [(s.owner, s.name) for s in specs]
    if len(set(seen)) != len(seen):
        raise ValueError("each repository may be named once (they unpack to OUTPUT/OWNER/NAME)")
    return specs


def main(argv: list[str] | None = None) -> int:
    """Fetch every repository, keep going past failures, and exit non-zero if any failed (2: refused to start)."""
    args = parse_args(argv)
    try:
        specs = parse_repos(args.repos)
        opts = FetchOptions(
            base_url=args.base_url,
            token=os.environ.get("GITHUB_TOKEN") or None,
            extensions=tuple(e.lower() if e.startswith(".") else "." + e.lower() for e in args.extensions),
            max_file_bytes=args.max_file_bytes,
            max_archive_bytes=args.max_archive_bytes,
            max_unpacked_bytes=args.max_unpacked_bytes,
            max_files=args.max_files,
            retries=args.retries,
            timeout=args.timeout,
            backoff=args.backoff,
        )
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    output = Path(args.output)
    total = RepoResult()
    failed: list[str] = []
    for spec in specs:
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
    ok = len(specs) - len(failed)
    print(f"fetched {ok}/{len(specs)} repos: {total.files} files, {total.bytes} bytes under {output}")
    if failed:
        print(f"failed: {' '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
