"""PySpark's Python worker daemon, importing pyspark from the installed package instead of Spark's zip.

Spark puts ``python/lib/pyspark.zip``, py4j's zip and its core jar first on its workers' path. Every Python task
then calls ``importlib.invalidate_caches()``, and since Python 3.10 each zip importer (one per package imported from
an archive, a few dozen in a worker) reads its archive's whole directory again: about 0.1 CPU s per task, for
nothing. In a local run the zip is the copy that ships inside the installed pyspark package, the same code, so this
daemon takes the archives off the path before it imports pyspark; where the package is not installed (a cluster's
workers) it keeps them.
Local-mode runs select it with ``spark.python.daemon.module`` (a cluster's workers may lack this package).

It also keeps a worker quiet when the JVM has gone away under it: when the driver exits (or a failed job's other
tasks are cancelled), a worker still holding output finds its socket closed, and PySpark's daemon prints that
``BrokenPipeError`` with its traceback on the run's stderr, after the run's own last line (its one-line error
included). Nobody reads that output any more; the worker exits without the traceback.
"""

import importlib.util
import os
import sys


def _in_spark_archive(path: str) -> bool:
    """Whether ``path`` is in one of the archives Spark puts on the path: its pyspark and py4j zips, and the jar
    of its core classes (which holds pyspark in some builds), or a folder inside one."""
    for suffix in (".zip", ".jar"):
        archive, found, _ = path.partition(suffix)
        if found and (suffix == ".jar" or os.path.basename(archive).startswith(("pyspark", "py4j"))):
            return True
    return False


def _prefer_installed_pyspark() -> None:
    """Drop Spark's archives from ``sys.path`` and their importers from the path cache (whose entries every
    ``invalidate_caches`` visits), when pyspark and py4j import without them."""
    full = list(sys.path)
    sys.path[:] = [path for path in full if not _in_spark_archive(path)]
    for path in [path for path in sys.path_importer_cache if _in_spark_archive(path)]:
        del sys.path_importer_cache[path]
    if importlib.util.find_spec("pyspark") is None or importlib.util.find_spec("py4j") is None:
        sys.path[:] = full


_prefer_installed_pyspark()

from pyspark import daemon  # noqa: E402 (the path must be settled first)


def _quiet_when_the_jvm_is_gone(worker):
    """``daemon.worker``, exiting without a traceback when its socket's other end (the JVM) is closed."""

    def run(sock, authenticated):
        try:
            return worker(sock, authenticated)
        except (BrokenPipeError, ConnectionResetError):
            os._exit(1)

    return run


daemon.worker = _quiet_when_the_jvm_is_gone(daemon.worker)

if __name__ == "__main__":
    daemon.manager()
