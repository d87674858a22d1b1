"""The SparkSession: local mode sized for a small machine, or whatever spark-submit configured.

Under ``spark-submit`` the master, executor memory and every other setting come from the submit command, so this
module only names the app. Locally it picks settings that keep a laptop responsive: shuffle partitions a few times
the core count (Spark's 200 would mean tiny tasks), Arrow on (every stage moves data as Arrow batches), and the UI off
when asked (tests), so parallel test runs don't fight over port 4040.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

from pyspark.sql import SparkSession

ARROW_BATCH_ROWS = 1024
"""Rows per Arrow batch handed to a stage; documents can be large, so keep batches modest (memory is per batch)."""


LOCAL_JAVA_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:ReservedCodeCacheSize=240m -XX:G1HeapRegionSize=32m"
"""JVM options of a local run's driver, the one JVM that then does all of Spark's work.

Only the quick (C1) JIT compiler: Spark generates and compiles code for every query, and in a local run on a few
cores HotSpot's optimising (C2) compiler threads take cores from the Python workers, which do most of this pipeline's
work. A long local run whose time goes to the JVM itself (big shuffles, sorts) may prefer ``""``: C2's code is faster
once compiled. Without tiered compilation HotSpot reserves only 48 MB for compiled code, which a long session fills
("CodeCache is full. Compiler has been disabled", then the JVM fails), so the cache keeps the tiered default, 240 MB.

G1 regions of 32 MB (HotSpot picks 2 MB for a 4 GB heap): G1 treats every array of half a region or more as
"humongous", and each humongous allocation may start a concurrent marking cycle. Documents are large strings, so
Parquet's column vectors and the rows of a big file are such arrays. docs/benchmarks.md has the measurements.
"""


LOCAL_SPARK_CONF = {
    # Spark's vectorized Parquet reader keeps a batch's values in on-heap column vectors that grow to the batch's
    # bytes: at its default of 4,096 rows, batches holding multi-MB documents made arrays of tens of MB in every task.
    "spark.sql.parquet.columnarReaderBatchSize": "256",
    # Every sort, aggregation and hash join of every task takes at least one page; Spark sizes pages from the heap
    # and cores (64 MB for a 2 GB heap on 2 cores), far more than the rows of these jobs need.
    "spark.buffer.pageSize": "8m",
    # Parquet's vectored reads allocate each column chunk whole on the heap; plain reads use buffers of 8 MB at most.
    "spark.hadoop.parquet.hadoop.vectored.io.enabled": "false",
    # Our own Parquet directories hold one part file per writing task, most of them one row group. Spark cuts a file
    # into splits of a few MB to fill its default parallelism, and every split without a row group's start is an empty
    # task. Opening a file priced as a whole split gives each part file one task (a file over 128 MB still splits).
    "spark.sql.files.openCostInBytes": str(128 << 20),
}
"""Settings of local runs: a JVM heap that stays small whatever the size of the documents and of the input, and one
task per part file when a stage reads what an earlier one wrote."""


def local_cores(master: str) -> int:
    """Cores a ``local``, ``local[N]``, ``local[N,F]`` or ``local[*]`` master runs tasks on (other masters: this
    machine's)."""
    if master == "local":
        return 1
    inside = master[len("local[") : -1].split(",")[0] if master.startswith("local[") else ""
    return int(inside) if inside.isdigit() else os.cpu_count() or 2


def default_driver_memory(master: str) -> str:
    """The driver heap of a local run: 384 MB plus 128 MB per core, at least 640 MB (640 MB on 1 or 2 cores, 2.375 GB
    on 16).

    The heap holds what the running tasks hold (a batch, a sort page, a Parquet page per task) and the broadcast
    removals (:data:`.documents.BROADCAST_ROWS_PER_GB`), not the corpus: it scales with the cores. G1 fills its bound
    whenever a run allocates for long enough, whatever its collection settings, so the bound is the JVM's memory on
    all but small inputs; one low enough that small inputs reach it too keeps the JVM's memory the same on both.
    """
    return f"{max(640, 384 + 128 * local_cores(master))}m"


def default_archive_dir() -> str:
    """Where local runs keep the driver JVM's class archive: the user's cache directory."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "slm-pretrain", "jvm")


def class_archive_options(directory: str, java_options: str) -> tuple[str, str | None]:
    """JVM options that start the driver from a class archive (HotSpot's dynamic class data sharing), or record one.

    A local run's JVM spends seconds loading and linking Spark's classes before its first job and warming up on it;
    mapped from an archive that an earlier run wrote, the same start takes about half as long (docs/benchmarks.md).
    The archive belongs to one JVM, one set of Spark jars and one set of JVM options (its file name hashes them), so
    a changed installation records a new one. The first run records it: the JVM writes it when it exits, under a
    temporary name that :func:`_keep_archive` renames once the JVM has exited cleanly, so a cut-short archive is never
    served (HotSpot maps the file and would crash on a truncated one). Returns the options and, when this run
    records, the temporary name it records to. ``directory`` empty: no archive.
    """
    home = os.environ.get("JAVA_HOME")
    java = (home and shutil.which("java", path=os.path.join(home, "bin"))) or shutil.which("java")
    if not directory or not java or any(c.isspace() for c in directory):
        return "", None
    java = os.path.realpath(java)
    if not os.path.isfile(os.path.join(os.path.dirname(os.path.dirname(java)), "lib", "server", "classes.jsa")):
        return "", None  # not HotSpot with its base archive (OpenJ9, a stripped JDK): a dynamic archive needs it
    jars = os.path.join(_spark_home(), "jars")
    stamp: list = [java, os.stat(java).st_mtime_ns, java_options]
    if os.path.isdir(jars):
        stamp += sorted((name, os.path.getsize(os.path.join(jars, name))) for name in os.listdir(jars))
    name = "spark-" + hashlib.sha256(json.dumps(stamp).encode()).hexdigest()[:16] + ".jsa"
    final = os.path.join(directory, name)
    quiet = "-Xlog:cds=off -Xlog:cds+dynamic=off"  # an archive that does not match is ignored, without warnings
    if os.path.isfile(final):
        return f"-XX:SharedArchiveFile={final} {quiet}", None
    try:
        os.makedirs(directory, exist_ok=True)
        for old in os.listdir(directory):  # recordings of runs killed before they could keep them, after an hour
            path = os.path.join(directory, old)
            if old.startswith(name + ".") and time.time() - os.path.getmtime(path) > 3600:
                os.remove(path)
    except OSError:
        return "", None
    recording = f"{final}.{os.getpid()}.tmp"
    return f"-XX:ArchiveClassesAtExit={recording} {quiet}", recording


def _keep_archive(recording: str) -> None:
    """At the driver's exit: stop Spark, let the JVM exit (it writes the archive then), keep the archive."""
    from pyspark import SparkContext

    proc = getattr(SparkContext._gateway, "proc", None)
    try:
        if SparkContext._active_spark_context is not None:
            SparkContext._active_spark_context.stop()
        if proc is not None and proc.stdin is not None and proc.poll() is None:
            print("saving the JVM's class archive for faster starts (once)", file=sys.stderr, flush=True)
            proc.stdin.close()  # the JVM exits at the end of its input
            if proc.wait(timeout=300) == 0 and os.path.getsize(recording) > 0:
                os.replace(recording, recording.rsplit(".", 2)[0])
    except (OSError, subprocess.TimeoutExpired):
        pass
    finally:
        if os.path.exists(recording):
            os.remove(recording)


def _spark_home() -> str:
    from pyspark.find_spark_home import _find_spark_home

    return _find_spark_home()


def launched_by_spark_submit() -> bool:
    """spark-submit starts the Python driver with a gateway into its own JVM; a plain ``python`` run has none."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def get_spark(
    master: str = "local[*]",
    app_name: str = "slm-pipeline",
    shuffle_partitions: int = 0,
    driver_memory: str = "auto",
    ui: bool | None = None,
    java_options: str = LOCAL_JAVA_OPTIONS,
    class_archive: str = "",
) -> SparkSession:
    """Return the active session or create one.

    ``ui=None`` reads ``SLM_SPARK_UI`` (``0`` disables the web UI; tests set it). ``driver_memory="auto"`` is
    :func:`default_driver_memory`. ``java_options`` go to a local
    driver JVM (:data:`LOCAL_JAVA_OPTIONS`); like the driver memory, they only apply when this call starts the JVM.
    ``class_archive``: a directory for the local JVM's class archive (:func:`class_archive_options`), or ``""``.
    """
    builder = SparkSession.builder.appName(app_name)
    if not launched_by_spark_submit():
        cores = os.cpu_count() or 2
        # Python workers must run the driver's interpreter (the project venv), not whatever python3 is on PATH.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        if ui is None:
            ui = os.environ.get("SLM_SPARK_UI", "1") != "0"
        builder = (
            builder.master(master)
            .config("spark.driver.memory", default_driver_memory(master) if driver_memory == "auto" else driver_memory)
            .config("spark.sql.shuffle.partitions", str(shuffle_partitions or 4 * cores))
            .config("spark.default.parallelism", str(shuffle_partitions or 4 * cores))
            .config("spark.ui.enabled", "true" if ui else "false")
            .config("spark.ui.showConsoleProgress", "true")
            .config("spark.sql.adaptive.enabled", "true")
        )
        for key, value in LOCAL_SPARK_CONF.items():
            builder = builder.config(key, value)
        if master.startswith("local"):  # workers on this machine import the installed pyspark, not Spark's zip of it
            builder = builder.config("spark.python.daemon.module", "spark_jobs.worker_daemon")
        if SparkSession.getActiveSession() is None and class_archive:
            archive, recording = class_archive_options(class_archive, java_options)
            java_options = f"{java_options} {archive}".strip()
            if recording:
                atexit.register(_keep_archive, recording)
        if java_options:
            builder = builder.config("spark.driver.extraJavaOptions", java_options)
    builder = (
        builder.config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", str(ARROW_BATCH_ROWS))
        .config("spark.python.worker.reuse", "true")
        # Over TCP, every Python task waited tens of milliseconds for its first Arrow batch (most likely Nagle's
        # algorithm meeting the worker's delayed ACK), much of a small cleaning task. A Unix domain socket (JVM and Python worker are always on one host) has no such wait.
        .config("spark.python.unix.domain.socket.enabled", "true")
    )
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark
