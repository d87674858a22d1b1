"""Small file-system helpers over pyarrow.fs, so local paths and object-store URIs are handled alike.

Spark reads and writes the data itself; these helpers are for what the driver and the executors touch directly:
listing inputs, opening one input file in a task, and writing small JSON files (report, manifest, stage markers).
Hadoop's ``s3a://`` is mapped to pyarrow's ``s3://`` so one URI works for both.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import shutil
from typing import IO

import pyarrow.fs as pafs


def resolve(uri: str) -> tuple[pafs.FileSystem, str]:
    """The file system and in-file-system path of a local path or URI."""
    if "://" not in uri:
        return pafs.LocalFileSystem(), os.path.abspath(uri)
    if uri.startswith("s3a://"):
        uri = "s3://" + uri[len("s3a://") :]
    return pafs.FileSystem.from_uri(uri)


def to_uri(fs: pafs.FileSystem, path: str) -> str:
    """A URI a Spark reader (or :func:`resolve`) accepts for ``path`` on ``fs``."""
    if isinstance(fs, pafs.LocalFileSystem):
        return "file://" + path
    return f"{fs.type_name}://{path}"


def spark_path(uri: str) -> str:
    """A path Spark's own readers and writers take: local paths stay paths, URIs pass through."""
    return uri if "://" in uri else os.path.abspath(uri)


def join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *parts])


def exists(uri: str) -> bool:
    fs, path = resolve(uri)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def read_text(uri: str) -> str:
    fs, path = resolve(uri)
    with fs.open_input_stream(path) as fh:
        return fh.read().decode("utf-8")


def write_text(uri: str, text: str) -> None:
    """Write a small text file whole; on local disks via a temporary name and a rename, so readers never see half."""
    fs, path = resolve(uri)
    parent = path.rsplit("/", 1)[0]
    fs.create_dir(parent, recursive=True)
    tmp = path + ".tmp"
    try:
        with fs.open_output_stream(tmp) as fh:
            fh.write(text.encode("utf-8"))
        fs.move(tmp, path)
    except OSError as err:  # a full disk: no half-written file is left behind, and the error names the file
        with contextlib.suppress(OSError):
            fs.delete_file(tmp)
        if err.errno is None:
            raise
        raise OSError(err.errno, err.strerror, uri) from err


NO_SPACE = os.strerror(errno.ENOSPC)
"""What a full disk says, in Python's errors and Java's alike ("No space left on device" on Linux)."""


def out_of_space(err: BaseException | None) -> str | None:
    """The text of the error in ``err``'s chain (``err``, what it was raised from or while handling) that says a disk
    is full, else None. Spark passes a Java ``IOException`` on only as text: a ``Py4JJavaError`` whose message ends
    in its chain of "Caused by:" lines (pyspark's own exceptions keep that error as their ``__context__``)."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        try:
            text = str(err)
        except Exception:  # a Py4JJavaError asks the JVM for its text, and the JVM may be gone
            text = ""
        if getattr(err, "errno", None) == errno.ENOSPC or NO_SPACE in text:
            return text
        err = err.__cause__ or err.__context__
    return None


def free_bytes(uri: str) -> int | None:
    """Free bytes on the local disk that holds ``uri`` (or would), None for other file systems' URIs."""
    if "://" in uri and not uri.startswith("file://"):
        return None
    path = resolve(uri)[1]
    while not os.path.exists(path) and path != os.path.dirname(path):
        path = os.path.dirname(path)
    return shutil.disk_usage(path).free


def open_input(uri: str) -> IO[bytes]:
    """A buffered binary stream over one input file (iterable by line), gunzipped when its name ends in ``.gz``."""
    fs, path = resolve(uri)
    compression = "gzip" if path.endswith(".gz") else None
    return io.BufferedReader(fs.open_input_stream(path, compression=compression), 1 << 20)


def parquet_rows(uri: str) -> int:
    """Rows in the Parquet files of a directory Spark wrote, summed from their footers (no data read, no Spark job);
    Spark's ``_SUCCESS`` and hidden ``.crc`` files are skipped."""
    import pyarrow.dataset as ds

    fs, path = resolve(uri)
    return ds.dataset(path, filesystem=fs, format="parquet").count_rows()


def remove(uri: str) -> None:
    """Delete a file if it is there."""
    fs, path = resolve(uri)
    if fs.get_file_info(path).type != pafs.FileType.NotFound:
        fs.delete_file(path)
