"""Helpers for the cluster tests: a Spark standalone cluster on 127.0.0.1 that the test owns, and output snapshots.

The cluster runs from the pip pyspark alone (``pyspark/bin/spark-class``). Every process is started with its working
directory inside the cluster's own temporary folder and in a new process group, so teardown can find exactly what
the test started (including executors and Python workers that outlived a killed parent) and prove that nothing
survived it; it never touches anything else on the machine.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pyarrow.parquet as pq
import pyspark

ROOT = Path(__file__).resolve().parents[1]
SPARK_BIN = Path(pyspark.__file__).parent / "bin"
EXECUTOR_CLASS = "CoarseGrainedExecutorBackend"


def small_corpus(demo_dir: Path, out_dir: Path, prose_docs: int = 40) -> list[str]:
    """A few hundred KB cut from the demo corpus that still gives every stage work, and returns ``--input`` paths.

    The fixture file is kept whole (other languages, fragments, boilerplate, exact and near copies of the first prose
    documents, malformed lines), with the first ``prose_docs`` prose documents and one standard-library package plus
    the binary and Latin-1 files as code: the cluster runs take seconds per stage, not minutes.
    """
    from spark_jobs.demo_corpus import write_demo_corpus

    write_demo_corpus(str(demo_dir))
    out_dir.mkdir(parents=True)
    with (demo_dir / "prose.jsonl").open("rb") as src, (out_dir / "prose.jsonl").open("wb") as dst:
        for _, line in zip(range(prose_docs), src, strict=False):
            dst.write(line)
    shutil.copyfile(demo_dir / "fixture.jsonl", out_dir / "fixture.jsonl")
    lib = demo_dir / "code" / "cpython-lib"
    code = out_dir / "code" / "cpython-lib"
    shutil.copytree(lib / "json", code / "json")
    for name in ("blob.py", "latin1.py"):
        shutil.copyfile(lib / name, code / name)
    return [str(out_dir / "prose.jsonl"), str(out_dir / "fixture.jsonl"), str(out_dir / "code")]


def submit_options(parallelism: int, conf: dict[str, str] | None = None) -> list[str]:
    """spark-submit options for 1-core, 1 GiB workers on 127.0.0.1 with ``parallelism`` shuffle and default
    partitions, plus the Spark settings ``conf``."""
    settings = {
        "spark.driver.host": "127.0.0.1",
        "spark.sql.shuffle.partitions": str(parallelism),
        "spark.default.parallelism": str(parallelism),
        **(conf or {}),
    }
    options = ["--driver-memory", "1g", "--executor-memory", "1g", "--executor-cores", "1"]
    for key, value in settings.items():
        options += ["--conf", f"{key}={value}"]
    return options


def free_port() -> int:
    """A port free on 127.0.0.1 right now (the OS picks it), so parallel test runs never collide on fixed ports."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str) -> Any | None:
    """A JSON document from a local Spark web UI or REST endpoint; None while it does not answer with JSON.

    Just after binding, a master's UI once answered ``/json/`` with its HTML page (the test failed on the decode), so a
    body that is not JSON counts as not answering yet.
    """
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return json.loads(resp.read())
    except (OSError, json.JSONDecodeError):
        return None


def active_tasks(driver_ui_port: int) -> dict[str, int]:
    """Tasks running now on each executor for a job that still needs them, in the application whose driver UI listens
    on ``driver_ui_port``.

    Counted from the running jobs' active stages, not from the executors' ``activeTasks``: a job that ends early (a
    ``limit`` satisfied by other partitions) leaves its remaining tasks counted there until the executor answers the
    kill, and losing such a task loses no work.
    """
    apps = get_json(f"http://127.0.0.1:{driver_ui_port}/api/v1/applications") or []
    if not apps:
        return {}
    base = f"http://127.0.0.1:{driver_ui_port}/api/v1/applications/{apps[0]['id']}"
    stage_ids = {s for job in get_json(f"{base}/jobs?status=running") or [] for s in job.get("stageIds", [])}
    counts: dict[str, int] = {}
    for stage in get_json(f"{base}/stages?status=active") or []:
        if stage["stageId"] not in stage_ids:
            continue
        attempts = get_json(f"{base}/stages/{stage['stageId']}?details=true&taskStatus=RUNNING") or []
        for attempt in attempts:
            for task in (attempt.get("tasks") or {}).values():
                if task.get("status") == "RUNNING":
                    counts[task["executorId"]] = counts.get(task["executorId"], 0) + 1
    return counts


def spark_env() -> dict[str, str]:
    """Environment for every Spark process: loopback only, the test's interpreter for Python workers, and pyspark's
    ``bin/`` first on PATH (the Docker entrypoint calls spark-class and spark-submit by name, as in the image)."""
    env = dict(os.environ)
    env.update(
        SPARK_LOCAL_IP="127.0.0.1",
        SPARK_LOCAL_HOSTNAME="127.0.0.1",
        PYSPARK_PYTHON=sys.executable,
        PYSPARK_DRIVER_PYTHON=sys.executable,
        PATH=f"{SPARK_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    return env


class StandaloneCluster:
    """A master and ``workers`` workers (1 core, 1 GiB each) on 127.0.0.1, all under ``root``.

    Started with ``spark-class`` directly, or, given ``entrypoint``, through the Docker image's entrypoint script
    (its ``master`` and ``worker`` roles, configured by environment variables as in docker/compose.yaml).
    """

    def __init__(self, root: Path, workers: int = 2, entrypoint: Path | None = None) -> None:
        self.root = root
        self.n_workers = workers
        self.entrypoint = entrypoint
        self.port = free_port()
        self.ui_port = free_port()
        self.logs = root / "logs"
        self.master: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []
        self.started: list[subprocess.Popen] = []

    @property
    def url(self) -> str:
        return f"spark://127.0.0.1:{self.port}"

    def work_dir(self, index: int) -> Path:
        return self.root / f"worker-{index}"

    def spawn(self, name: str, argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
        """Start a child in its own process group, output to ``logs/NAME.log``, owned by this cluster's teardown
        (a cluster process, a spark-submit, or any run that should not outlive the cluster)."""
        self.logs.mkdir(parents=True, exist_ok=True)
        cwd.mkdir(parents=True, exist_ok=True)
        with (self.logs / f"{name}.log").open("wb") as log:
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env={**spark_env(), **(env or {})},
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.started.append(proc)
        return proc

    def start(self, timeout: float = 120) -> None:
        """Start the master, wait for it, then start the workers (they register while the caller does other work:
        :meth:`wait_ready` waits for them)."""
        spark_class = str(SPARK_BIN / "spark-class")
        if self.entrypoint:
            self.master = self.spawn(
                "master",
                ["bash", str(self.entrypoint), "master"],
                self.root,
                {
                    "SPARK_MASTER_HOST": "127.0.0.1",
                    "SPARK_MASTER_PORT": str(self.port),
                    "SPARK_MASTER_WEBUI_PORT": str(self.ui_port),
                },
            )
        else:
            self.master = self.spawn(
                "master",
                [
                    spark_class,
                    "org.apache.spark.deploy.master.Master",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--webui-port",
                    str(self.ui_port),
                ],
                self.root,
            )
        self._wait(lambda s: s is not None, timeout, "master web UI")
        for i in range(self.n_workers):
            if self.entrypoint:
                argv = ["bash", str(self.entrypoint), "worker", "--host", "127.0.0.1"]
                env = {
                    "SPARK_MASTER_URL": self.url,
                    "SPARK_WORKER_CORES": "1",
                    "SPARK_WORKER_MEMORY": "1g",
                    "SPARK_WORKER_WEBUI_PORT": str(free_port()),
                    "SPARK_WORKER_DIR": str(self.work_dir(i)),
                }
            else:
                argv = [
                    spark_class,
                    "org.apache.spark.deploy.worker.Worker",
                    self.url,
                    "--host",
                    "127.0.0.1",
                    "--cores",
                    "1",
                    "--memory",
                    "1g",
                    "--webui-port",
                    str(free_port()),
                    "--work-dir",
                    str(self.work_dir(i)),
                ]
                env = {}
            self.workers.append(self.spawn(f"worker-{i}", argv, self.work_dir(i), env))

    def wait_ready(self, timeout: float = 120) -> None:
        """Return once every worker is registered ALIVE with the master."""
        self._wait(lambda s: s is not None and self.alive_workers(s) == self.n_workers, timeout, "workers ALIVE")

    def state(self) -> dict[str, Any] | None:
        """The master's JSON status page (workers, active and completed apps); None until it answers."""
        return get_json(f"http://127.0.0.1:{self.ui_port}/json/")

    @staticmethod
    def alive_workers(state: dict[str, Any]) -> int:
        return sum(1 for w in state.get("workers", []) if w.get("state") == "ALIVE")

    def _wait(self, ready, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dead = [p for p in (self.master, *self.workers) if p is not None and p.poll() is not None]
            if dead:
                raise RuntimeError(f"a cluster process exited early ({dead[0].args[1]}):\n{self.log_tails()}")
            if ready(self.state()):
                return
            time.sleep(0.5)
        raise TimeoutError(f"cluster not ready ({what}) after {timeout} s:\n{self.log_tails()}")

    def log_tails(self, lines: int = 30) -> str:
        """The last lines of every log under ``logs/``, for failure messages."""
        out = []
        for log in sorted(self.logs.glob("*.log")):
            tail = log.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {log.name}\n" + "\n".join(tail))
        return "\n".join(out)

    def executors(self, worker: int) -> dict[str, psutil.Process]:
        """Executor JVMs that worker ``worker`` launched (children running ``CoarseGrainedExecutorBackend``), by id."""
        found = {}
        for child in psutil.Process(self.workers[worker].pid).children(recursive=True):
            try:
                argv = child.cmdline()
            except psutil.NoSuchProcess:
                continue
            if any(EXECUTOR_CLASS in part for part in argv) and "--executor-id" in argv:
                found[argv[argv.index("--executor-id") + 1]] = child
        return found

    def kill_busy_executor(
        self, worker: int, driver_ui_port: int, job: subprocess.Popen, ready: Callable[[], bool], timeout: float
    ) -> str:
        """SIGKILL an executor of worker ``worker`` while it runs a task, once ``ready()``; return its id.

        A task can end between looking and killing, so the executor is first frozen (SIGSTOP: it can neither finish
        the task nor report it), the driver asked again a second later, and only then killed; else it is thawed and
        the search goes on. The driver's UI can lag behind its scheduler on a busy machine, so the frozen executor's
        own log must show a task it started and has not ended too (it logs a task's end before it reports it). The
        loss is then certain to hit running work, not an idle executor.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if job.poll() is not None:
                raise RuntimeError(f"the job ended (exit {job.returncode}) before an executor could be killed")
            busy = active_tasks(driver_ui_port) if ready() else {}
            for exec_id, proc in self.executors(worker).items():
                if busy.get(exec_id, 0) < 1:
                    continue
                proc.suspend()
                time.sleep(1.0)
                if active_tasks(driver_ui_port).get(exec_id, 0) > 0 and self.unended_tasks(proc):
                    proc.kill()
                    proc.wait(timeout=30)
                    return exec_id
                proc.resume()
            time.sleep(0.1)
        raise TimeoutError(f"no busy executor on worker {worker} within {timeout} s")

    @staticmethod
    def unended_tasks(executor: psutil.Process) -> set[str]:
        """Task ids that an executor logged as started and not as finished, failed or killed (its ``stderr`` in its
        working directory, the worker's folder for this application and executor)."""
        text = (Path(executor.cwd()) / "stderr").read_text(errors="replace")
        started = set(re.findall(r"Running task \S+ in stage \S+ \(TID (\d+)\)", text))
        ended = set(re.findall(r"(?:Finished|Exception in|killed) task \S+ in stage \S+ \(TID (\d+)\)", text))
        return started - ended

    def app_dirs(self) -> dict[str, list[str]]:
        """Per application id, the executor ids that ran for it on any worker (``WORK_DIR/APP/EXECUTOR``)."""
        apps: dict[str, list[str]] = {}
        for i in range(self.n_workers):
            for app in sorted(self.work_dir(i).glob("app-*")):
                apps.setdefault(app.name, []).extend(sorted(d.name for d in app.iterdir() if d.is_dir()))
        return apps

    def submit(self, argv: list[str], log_name: str) -> subprocess.Popen:
        """Start ``spark-submit --master URL ARGV`` (client mode, driver on this machine) as an owned child."""
        return self.spawn(
            log_name, [str(SPARK_BIN / "spark-submit"), "--master", self.url, *argv], self.root / "driver"
        )

    def owned_processes(self) -> list[psutil.Process]:
        """Everything this cluster started: the spawned processes, their descendants, and any process whose working
        directory lies under ``root`` (executors and their Python workers get one there, and keep it even when a
        parent was killed and they were re-parented)."""
        procs: dict[int, psutil.Process] = {}
        for p in self.started:
            try:
                proc = psutil.Process(p.pid)
                procs[proc.pid] = proc
                procs.update((c.pid, c) for c in proc.children(recursive=True))
            except psutil.NoSuchProcess:
                continue
        root = str(self.root.resolve())
        for proc in psutil.process_iter():
            try:
                cwd = proc.cwd()
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            if cwd == root or cwd.startswith(root + os.sep):
                procs[proc.pid] = proc
        procs.pop(os.getpid(), None)
        return list(procs.values())

    def stop(self, timeout: float = 30) -> list[int]:
        """Stop everything started here (TERM, then KILL); return the PIDs still alive afterwards (should be none)."""
        owned = self.owned_processes()
        for p in self.started:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        _, alive = psutil.wait_procs(owned, timeout=timeout)
        for proc in alive:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                continue
        psutil.wait_procs(alive, timeout=10)
        for p in self.started:
            try:
                p.wait(timeout=10)  # reap our own children, so they are gone rather than zombies
            except subprocess.TimeoutExpired:
                continue
        return sorted(proc.pid for proc in owned if _alive(proc))


def _alive(proc: psutil.Process) -> bool:
    """Running and not a zombie (a zombie is dead, merely not yet reaped by its parent)."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def file_digests(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under ``folder``, by relative path (for byte-for-byte output comparisons)."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _stage_facts(stage: dict[str, Any]) -> dict[str, Any]:
    """A stage's report without what may differ between equal runs: ``reused``, and in near-dedup's top-N list of
    LSH buckets, which of several equally large buckets made the cut (ties are not fully ordered, so that depends on
    the partitioning); the sizes listed must still agree."""
    facts = {k: v for k, v in stage.items() if k != "reused"}
    if "largest_buckets" in facts.get("lsh", {}):
        facts["lsh"] = {**facts["lsh"], "largest_buckets": [b["size"] for b in facts["lsh"]["largest_buckets"]]}
    return facts


def snapshot(out: Path) -> dict[str, Any]:
    """What a run produced, in a form two runs can be compared by: independent of partitioning and file names.

    Cleaned documents by doc_id (text digest and annotations), removed documents by doc_id (reason, rule, kept
    duplicate), the packed directory byte for byte when pack ran, and the report's per-stage flows and accounting.
    """
    cleaned = pq.read_table(out / "cleaned", columns=["doc_id", "text", "kind", "source", "lang"]).to_pylist()
    removed = pq.read_table(out / "removed", columns=["doc_id", "reason", "rule", "duplicate_of"]).to_pylist()
    report = json.loads((out / "report.json").read_text())
    snap: dict[str, Any] = {
        "cleaned": {
            r["doc_id"]: (hashlib.sha256((r["text"] or "").encode()).hexdigest(), r["kind"], r["source"], r["lang"])
            for r in cleaned
        },
        "removed": {r["doc_id"]: (r["reason"], r["rule"], r["duplicate_of"]) for r in removed},
        "rows": (len(cleaned), len(removed)),
        "accounting": report["accounting"],
        "stages": {name: _stage_facts(st) for name, st in report["stages"].items()},
    }
    if (out / "packed").exists():
        snap["packed"] = file_digests(out / "packed")
    return snap
