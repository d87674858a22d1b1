import subprocess
import sys
from pathlib import Path

import pyspark

from spark_jobs.documents import position_id

ROOT = Path(__file__).resolve().parents[2]


def test_spark_fixture_runs_arrow_batches(spark):
    df = spark.range(0, 100, numPartitions=3)

    def double(batches):
        for b in batches:
            import pyarrow as pa
            import pyarrow.compute as pc

            yield pa.RecordBatch.from_arrays([pc.multiply(b.column(0), 2)], names=["id"])

    total = df.mapInArrow(double, "id long").agg({"id": "sum"}).first()[0]
    assert total == 2 * sum(range(100))
    assert spark.conf.get("spark.sql.execution.arrow.pyspark.enabled") == "true"


def test_python_workers_talk_to_the_jvm_over_a_unix_socket(spark):
    """The JVM tells the Python daemon which transport to use; each task's worker inherits it."""

    def transport(batches):
        import os

        import pyarrow as pa

        for _ in batches:
            pass
        yield pa.RecordBatch.from_pylist([{"uds": os.environ.get("PYTHON_UNIX_DOMAIN_ENABLED", "unset").lower()}])

    seen = {row.uds for row in spark.range(0, 10, numPartitions=2).mapInArrow(transport, "uds string").collect()}
    assert seen == {"true"}


def test_python_workers_import_the_installed_pyspark_not_sparks_zip(spark):
    """In a local run the worker daemon takes Spark's pyspark.zip off the path: no zip importer re-reads it per task."""

    def origin(batches):
        import sys
        import zipimport

        import pyarrow as pa
        import pyspark

        for _ in batches:
            pass
        zips = [key for key, value in sys.path_importer_cache.items() if isinstance(value, zipimport.zipimporter)]
        yield pa.RecordBatch.from_pylist([{"pyspark": pyspark.__file__, "zips": ";".join(zips)}])

    rows = spark.range(0, 10, numPartitions=2).mapInArrow(origin, "pyspark string, zips string").collect()
    assert {row.pyspark for row in rows} == {pyspark.__file__}
    assert {row.zips for row in rows} == {""}


QUIET_WORKER = """
import os, socket
os.environ["PYTHON_DAEMON_KILL_WORKER_ON_FLUSH_FAILURE"] = "1"  # as Spark sets it for its daemon
from spark_jobs import worker_daemon
from pyspark import daemon
ours, jvm = socket.socketpair()
jvm.sendall((0).to_bytes(4, "big"))  # a task's first int, then the JVM goes away
jvm.close()
daemon.worker(ours, True)
"""


def test_a_worker_whose_jvm_is_gone_exits_without_a_traceback_under_our_daemon():
    """PySpark's worker, its socket closed while it holds output, raises BrokenPipeError out of ``daemon.worker``
    (whose daemon prints it on the run's stderr); with our daemon module imported it exits quietly instead."""

    def worker(code: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)

    bare = worker(QUIET_WORKER.replace("from spark_jobs import worker_daemon\n", ""))
    assert bare.returncode == 1 and "BrokenPipeError" in bare.stderr  # the failure guarded against is real
    ours = worker(QUIET_WORKER)
    assert ours.returncode == 1 and ours.stderr == ""


def test_position_id_is_stable_and_signed():
    a = position_id("file:///x/a.jsonl", 0)
    assert a == position_id("file:///x/a.jsonl", 0)
    assert a != position_id("file:///x/a.jsonl", 1)
    assert a != position_id("file:///x/b.jsonl", 0)
    ids = [position_id("s", i) for i in range(1000)]
    assert all(-(2**63) <= i < 2**63 for i in ids)
    assert any(i < 0 for i in ids) and any(i > 0 for i in ids)


def test_local_driver_jvm_runs_with_the_configured_options(spark):
    """The quick-JIT default reaches the JVM that get_spark started (not only the conf), and the pipeline's config
    carries it; it changes how a run executes, never what it produces."""
    from spark_jobs.config import PipelineConfig, option_fields
    from spark_jobs.session import LOCAL_JAVA_OPTIONS

    mx = spark.sparkContext._jvm.java.lang.management.ManagementFactory.getRuntimeMXBean()
    assert set(LOCAL_JAVA_OPTIONS.split()) <= set(mx.getInputArguments())
    assert PipelineConfig(input=["x"], output="y").driver_java_options == LOCAL_JAVA_OPTIONS
    assert option_fields()["driver_java_options"].metadata["execution_only"]


def test_local_sessions_bound_the_jvm_heap_by_cores_and_read_parquet_in_small_batches(spark):
    """The heap bound follows the cores a local master runs tasks on; the memory settings reach the running session."""
    import os

    from spark_jobs.session import LOCAL_SPARK_CONF, default_driver_memory, local_cores

    assert [local_cores(m) for m in ("local", "local[2]", "local[16,3]")] == [1, 2, 16]
    assert local_cores("local[*]") == local_cores("spark://127.0.0.1:7077") == (os.cpu_count() or 2)
    assert [default_driver_memory(m) for m in ("local", "local[2]", "local[16]")] == ["640m", "640m", "2432m"]
    for key, value in LOCAL_SPARK_CONF.items():
        assert spark.sparkContext.getConf().get(key) == value, key


def test_class_archive_is_recorded_under_a_temporary_name_and_served_only_once_complete(tmp_path):
    """A cut-short recording (a run killed while its JVM wrote it) is never passed to a JVM, which would map it and
    crash; an abandoned one is removed after an hour; a complete archive is served."""
    import os
    import time

    from spark_jobs.session import class_archive_options

    options, recording = class_archive_options(str(tmp_path), "-Xmx1g")
    assert recording and options.startswith(f"-XX:ArchiveClassesAtExit={recording} ")
    final = recording.rsplit(".", 2)[0]
    assert final.endswith(".jsa") and os.path.dirname(final) == str(tmp_path)
    with open(recording, "wb") as fh:
        fh.write(b"cut short")
    assert class_archive_options(str(tmp_path), "-Xmx1g")[1]  # still recording: the partial file is not served
    os.utime(recording, (time.time() - 7200, time.time() - 7200))
    class_archive_options(str(tmp_path), "-Xmx1g")
    assert not os.path.exists(recording)
    with open(final, "wb") as fh:
        fh.write(b"archive")
    assert class_archive_options(str(tmp_path), "-Xmx1g") == (
        f"-XX:SharedArchiveFile={final} " + options.split(" ", 1)[1],
        None,
    )
    other, _ = class_archive_options(str(tmp_path), "-Xmx2g")  # other JVM options: another archive
    assert final not in other
    assert class_archive_options("", "-Xmx1g") == ("", None)


def test_a_cli_run_records_the_class_archive_and_the_next_run_maps_it(tmp_path):
    """Through the real command line: the archive is there (recorded by a first run when no earlier one did), and
    the next run's JVM has the file mapped (read from /proc while it runs), recording nothing new."""
    import json
    import subprocess
    import sys
    import time
    from pathlib import Path

    import psutil

    from spark_jobs.session import LOCAL_JAVA_OPTIONS, class_archive_options, default_archive_dir

    (tmp_path / "in.jsonl").write_text(
        "".join(
            json.dumps({"id": i, "text": f"document {i} with a few words\nand a second line"}) + "\n" for i in range(20)
        )
    )
    archive = Path(default_archive_dir())

    def command(out: str) -> list[str]:
        return [sys.executable, "-m", "spark_jobs.pipeline", "--input", str(tmp_path / "in.jsonl"), "--output",
                str(tmp_path / out), "--stages", "filter", "--master", "local[1]", "--driver-memory", "1g"]  # fmt: skip

    if class_archive_options(str(archive), LOCAL_JAVA_OPTIONS)[1]:  # none yet for these options: a run records it
        first = subprocess.Popen(command("a"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        _, errors = first.communicate(timeout=600)
        assert first.returncode == 0, errors[-2000:]
        assert not list(archive.glob(f"*.{first.pid}.tmp"))  # kept under its final name
    options, recording = class_archive_options(str(archive), LOCAL_JAVA_OPTIONS)
    archives = sorted(archive.glob("spark-*.jsa"))
    assert recording is None and any(f"-XX:SharedArchiveFile={a} " in options for a in archives)

    proc = subprocess.Popen(command("b"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    mapped = set()
    while proc.poll() is None:
        for child in psutil.Process(proc.pid).children(recursive=True):
            try:
                maps = Path(f"/proc/{child.pid}/maps").read_text()
            except OSError:
                continue
            mapped |= {str(a) for a in archives if str(a) in maps}
        time.sleep(0.05)
    assert proc.wait() == 0
    assert len(mapped) == 1
    assert sorted(archive.glob("spark-*.jsa")) == archives and not list(archive.glob(f"*.{proc.pid}.tmp"))


def test_no_class_archive_for_a_jvm_without_hotspots_base_archive(tmp_path, monkeypatch):
    """A dynamic archive extends the JDK's own (``lib/server/classes.jsa``): a JVM without one (OpenJ9, a stripped
    JDK) gets no archive options, which it might not even know."""
    import os

    from spark_jobs.session import class_archive_options

    java = tmp_path / "jdk" / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text("#!/bin/sh\n")
    os.chmod(java, 0o755)
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "jdk"))
    assert class_archive_options(str(tmp_path / "archive"), "") == ("", None)
    (tmp_path / "jdk" / "lib" / "server").mkdir(parents=True)
    (tmp_path / "jdk" / "lib" / "server" / "classes.jsa").write_bytes(b"base")
    assert class_archive_options(str(tmp_path / "archive"), "")[1]
