# Training image: CUDA PyTorch, the project, Accelerate as the entry point. Build from the repository root:
#   docker build -f docker/train.Dockerfile -t slm-pretrain-train:0.1.0 .
# Run (one node, all GPUs; NCCL needs a large /dev/shm, hence --ipc=host):
#   docker run --gpus all --ipc=host -v /shared:/shared slm-pretrain-train:0.1.0 \
#     --config_file /opt/slm/accelerate/multi_gpu.yaml -m train --data /shared/out/packed \
#     --model /shared/models/init --output /shared/runs/run1
# Multi-node: docs/cluster.md (add --network host, one container per node, machine_rank per node).
#
# Base: plain Python 3.11 rather than a CUDA image. The project pins torch (constraints.txt), and PyPI's Linux torch
# wheel carries its own CUDA and cuDNN libraries (the nvidia-* wheels); a pytorch/pytorch or nvidia/cuda base would
# bring a second CUDA and a Python or torch other than the pinned ones. The host needs only the NVIDIA driver and
# the NVIDIA container toolkit.
FROM python:3.11.11-slim-bookworm

# TOKENIZERS_PARALLELISM is a switch, not a secret (hadolint matches the word TOKEN).
# hadolint ignore=DL3064
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false \
    HF_HOME=/home/trainer/.cache/huggingface

# torch first, in its own layer: the largest download, and the one that changes least often.
# Keep TORCH_VERSION equal to constraints.txt (the CUDA 12 build is PyPI's default for this version on Linux).
ARG TORCH_VERSION=2.13.0
RUN pip install --no-cache-dir "torch==${TORCH_VERSION}"

WORKDIR /opt/slm
COPY pyproject.toml README.md constraints.txt ./src/
COPY slm_common ./src/slm_common
COPY spark_jobs ./src/spark_jobs
COPY model_surgery ./src/model_surgery
COPY train ./src/train
RUN pip install --no-cache-dir -c src/constraints.txt ./src \
    && rm -rf src
COPY docker/accelerate /opt/slm/accelerate

RUN groupadd --gid 1000 trainer \
    && useradd --uid 1000 --gid 1000 --create-home --shell /bin/bash trainer
USER 1000:1000
WORKDIR /home/trainer

# accelerate launch [accelerate options] -m train [train options]
ENTRYPOINT ["accelerate", "launch"]
CMD ["-m", "train", "--help"]
