"""The pipeline on a real Spark standalone cluster (a master and two workers on 127.0.0.1), through spark-submit.

A cluster run must produce exactly what a local run produces: the same cleaned and removed documents, the same packed
bytes, the same report. That must hold when an executor dies in the middle of the job too: Spark retries the lost
tasks on a replacement executor, and nothing may be lost or written twice. The code reaches the executors the way
docs/cluster.md says: ``--py-files`` with the project's wheel as a zip (``make dist``), entry file
``spark_jobs/submit.py``. All default stages run: a stage that fails to import fails the test.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from spark_jobs.config import DEFAULT_STAGES, PipelineConfig
from spark_jobs.pipeline import run
from tests.cluster_utils import ROOT, StandaloneCluster, free_port, small_corpus, snapshot, submit_options

pytestmark = pytest.mark.slow

STAGES = list(DEFAULT_STAGES)
PIPELINE_ARGS = [
    "--stages",
    ",".join(STAGES),
    "--seq-len",
    "32",
    "--num-shards",
    "4",
    "--val-fraction",
    "0.05",
    "--dedup-checkpoint",
    "reliable",
]
ENTRY = ROOT / "spark_jobs" / "submit.py"
SUBMIT_TIMEOUT = 240


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    base = tmp_path_factory.mktemp("cluster-corpus")
    return small_corpus(base / "demo", base / "small")


@pytest.fixture(scope="module")
def py_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``dist/slm_pretrain.zip`` as ``make dist`` makes it (the project wheel under a .zip name).

    Built from a copy of the sources, so the test leaves no ``build/`` behind in the tree and never packs stale files.
    """
    base = tmp_path_factory.mktemp("dist")
    src = base / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in ("slm_common", "spark_jobs", "model_surgery", "train"):
        shutil.copytree(ROOT / package, src / package, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copyfile(ROOT / name, src / name)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(base / "dist"),
            str(src),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = (base / "dist").glob("slm_pretrain-*.whl")
    return Path(shutil.copyfile(wheel, base / "dist" / "slm_pretrain.zip"))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    """Master + two 1-core workers; torn down whatever happens, and no process it started may survive."""
    spark_cluster = StandaloneCluster(tmp_path_factory.mktemp("standalone"), workers=2)
    try:
        spark_cluster.start()  # the workers register while the test prepares
        yield spark_cluster
    finally:
        survivors = spark_cluster.stop()
    assert survivors == [], f"processes survived the cluster teardown: {survivors}"


@dataclass
class BackgroundRun:
    """A pipeline run in a child process: started early, awaited when its output is needed."""

    proc: subprocess.Popen
    out: Path
    log: Path

    def result(self) -> Path:
        try:
            rc = self.proc.wait(timeout=SUBMIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            rc = None  # the cluster fixture's teardown ends it
        assert rc == 0, f"local run exited {rc}:\n{self.log.read_text(errors='replace')[-6000:]}"
        return self.out


@pytest.fixture(scope="module")
def local_reference(cluster: StandaloneCluster, corpus: list[str]) -> BackgroundRun:
    """The same pipeline command in local mode (``python -m spark_jobs.pipeline --master local[2]``): what the
    cluster run must equal. It runs while the cluster job runs (most of a small Spark job is waiting, not
    computing), owned by the cluster fixture so that its teardown ends it too."""
    out = cluster.root / "local" / "out"
    argv = [
        sys.executable,
        "-m",
        "spark_jobs.pipeline",
        "--master",
        "local[2]",
        "--driver-memory",
        "1g",
        "--input",
        *corpus,
        "--output",
        str(out),
        *PIPELINE_ARGS,
    ]
    proc = cluster.spawn("local", argv, out.parent, {"PYTHONPATH": str(ROOT)})
    return BackgroundRun(proc, out, cluster.logs / "local.log")


def submit_argv(py_files: Path, corpus: list[str], out: Path, ui_port: int) -> list[str]:
    """The spark-submit arguments of docs/cluster.md, sized for two 1-core, 1 GiB workers (driver UI on for its
    REST API, which tells the test which executor is running tasks)."""
    conf = {
        "spark.pyspark.python": sys.executable,
        "spark.pyspark.driver.python": sys.executable,
        "spark.ui.port": str(ui_port),
        "spark.ui.showConsoleProgress": "false",
    }
    return [
        *submit_options(4, conf),
        "--py-files",
        str(py_files),
        str(ENTRY),
        "--input",
        *corpus,
        "--output",
        str(out),
        *PIPELINE_ARGS,
    ]


def test_dist_zip_alone_provides_the_packages(py_files: Path, tmp_path: Path) -> None:
    """Executors import the project from the zip: it must hold all three packages and win over an installed copy."""
    code = (
        "import importlib.util, spark_jobs.pipeline; print(spark_jobs.pipeline.__file__, "
        "*(importlib.util.find_spec(p).origin for p in ('model_surgery', 'train')))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(py_files)},
    )
    assert proc.returncode == 0, proc.stderr
    paths = proc.stdout.split()
    assert len(paths) == 3 and all(path.startswith(str(py_files) + "/") for path in paths), paths


def test_spark_submit_survives_a_killed_executor_and_equals_local_run(
    cluster, py_files, corpus, local_reference, tmp_path
):
    """spark-submit on the standalone cluster; once the first stage is written, one executor is SIGKILLed in the
    middle of a task. Spark must rerun the lost work on a replacement executor, and the result must be exactly the
    local run's: same documents kept and removed (none twice), same packed bytes, same report."""
    cluster.wait_ready()
    apps_before = set(cluster.app_dirs())
    out, ui_port = tmp_path / "out", free_port()
    job = cluster.submit(submit_argv(py_files, corpus, out, ui_port), "submit")

    def first_stage_written() -> bool:
        return any((out / "_stages").glob("00-*/_stage.json"))

    killed = cluster.kill_busy_executor(0, ui_port, job, first_stage_written, timeout=SUBMIT_TIMEOUT)

    try:
        rc = job.wait(timeout=SUBMIT_TIMEOUT)
    except subprocess.TimeoutExpired:
        rc = None  # the cluster fixture's teardown ends it
    log = (cluster.logs / "submit.log").read_text(errors="replace")
    assert rc == 0, f"spark-submit exited {rc}:\n{log[-6000:]}\n{cluster.log_tails()}"
    # Work was lost and redone: a task running on the executor (ExecutorLostFailure), or, when its task had just ended
    # before the kill, the shuffle output it held (FetchFailed, then its map stage rerun).
    assert f"Lost executor {killed}" in log and ("ExecutorLostFailure" in log or "FetchFailed" in log)
    (app,) = set(cluster.app_dirs()) - apps_before
    assert len(cluster.app_dirs()[app]) == 3, "two executors, plus the one the worker launched to replace the lost one"

    got, want = snapshot(out), snapshot(local_reference.result())
    assert got["accounting"]["input"] == got["accounting"]["cleaned"] + got["accounting"]["removed"]
    assert got["rows"] == (len(got["cleaned"]), len(got["removed"]))  # no document written twice
    assert got == want
    assert any(name.startswith("train/part-") for name in got["packed"])
    assert not [name for name in got["packed"] if ".tmp" in name]  # no shard left half-written


def test_rerun_reuses_finished_stages_and_a_changed_option_redoes_them(spark, corpus, local_reference, tmp_path):
    """Staged restarts, on a copy of the reference output: the same command skips every written stage (an
    execution-only option changes nothing), while an option of the first cleaning stage redoes it and every stage
    after it."""
    stages = ["filter", "langid"]
    out = tmp_path / "out"
    reference = local_reference.result()
    shutil.copytree(reference, out)
    argv = ["--input", *corpus, "--output", str(out), *PIPELINE_ARGS, "--stages", ",".join(stages)]

    again = run(PipelineConfig.from_args([*argv, "--shuffle-partitions", "3"]), spark)
    assert {name: st["reused"] for name, st in again["stages"].items()} == dict.fromkeys(["ingest", *stages], True)
    written = snapshot(reference)["stages"]
    assert again["stages"] == {name: {**written[name], "reused": True} for name in again["stages"]}

    changed = run(PipelineConfig.from_args([*argv, "--min-words", "6"]), spark)
    assert [changed["stages"][name]["reused"] for name in stages] == [False] * len(stages)
