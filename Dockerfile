# gsic encoder service: one image, two variants chosen by the VARIANT build argument.
#
#   docker build -t gsic:gpu .                          # default: CUDA build of torch, for --gpus all
#   docker build -t gsic:cpu --build-arg VARIANT=cpu .  # CPU-only torch wheel, for hosts without a GPU
#   docker run --gpus all -p 8000:8000 -v gsic-data:/data gsic:gpu
#
# Base image: python:3.11.15-slim-trixie (Debian 13), pinned by its full tag, for both variants.
#   * Not nvidia/cuda: torch's PyPI wheel is already a CUDA build that brings the CUDA user-space libraries
#     as pip wheels (cuda-toolkit 13.0.3: cudart, cuBLAS, cuFFT, nvrtc, nvJitLink, ...; cuDNN 9.20; NCCL).
#     The one piece the host must supply is the driver (libcuda.so.1); the NVIDIA container runtime mounts
#     it into any image on `docker run --gpus all` and refreshes the linker cache. An nvidia/cuda runtime
#     base would add a second copy of those libraries (gigabytes) that torch never loads.
#   * Python 3.11: the interpreter the test suite runs on (pyproject: requires-python >=3.10); torch 2.13.0,
#     triton and every other dependency publish manylinux wheels for cp311, so nothing is compiled here.
#   * Pinned by tag, not digest: the tag is rebuilt by Docker for Debian security fixes. Append @sha256:...
#     to freeze it completely, and bump the tag on purpose (see docker/README.md, "Upgrading").
#
# PyTorch and Triton: torch==2.13.0, the pin in constraints.txt, in both variants.
#   * gpu: torch 2.13.0 from PyPI = CUDA 13.0 build, so the host needs an NVIDIA driver >= 580. Its metadata
#     requires triton==3.7.1 exactly, which contradicts constraints.txt's triton==3.8.0 (chosen for CPU
#     machines, whose Triton interpreter must work with numpy 2). The gpu stage therefore removes that one
#     line from the constraints and lets torch install the Triton it was built against (3.7.1 for 2.13.0).
#     For an older driver, rebuild against a torch index of an older CUDA, e.g.
#     --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126 (same torch version).
#     Triton JIT-compiles a small C launcher at run time with the system C compiler, Python.h and
#     libcuda.so.1, so the gpu runtime stage installs gcc + libc6-dev and checks that they work.
#   * cpu: torch 2.13.0+cpu from the PyTorch CPU index (no CUDA libraries, a far smaller image) and
#     triton==3.8.0 as constraints.txt pins it (pyproject requires triton on Linux; the CPU path renders with
#     numba and never calls Triton).
#
# Dependencies come from pyproject.toml alone: the `wheel` stage builds the project's wheel and pip installs
# that wheel with constraints.txt. No stage lists packages of its own (tests/test_container.py checks this).

ARG PYTHON_IMAGE=python:3.11.15-slim-trixie
ARG VARIANT=gpu

# ---- wheel: the project's wheel, built from pyproject.toml -------------------------------------------
FROM ${PYTHON_IMAGE} AS wheel
WORKDIR /src
# .dockerignore admits only pyproject.toml, README.md, constraints.txt and the packages that pyproject lists
COPY . .
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# ---- venv-gpu: CUDA torch from PyPI and its own triton --------------------------------------------------
FROM ${PYTHON_IMAGE} AS venv-gpu
ARG TORCH_INDEX_URL=https://pypi.org/simple
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
COPY constraints.txt /tmp/constraints.txt
COPY --from=wheel /wheels /tmp/wheels
RUN python -m venv /opt/venv \
 && grep -v '^triton==' /tmp/constraints.txt > /tmp/constraints-gpu.txt \
 && /opt/venv/bin/pip install --index-url "${TORCH_INDEX_URL}" -c /tmp/constraints-gpu.txt torch \
 && /opt/venv/bin/pip install -c /tmp/constraints-gpu.txt /tmp/wheels/gsic-*.whl \
 && /opt/venv/bin/pip check \
 && /opt/venv/bin/python -c "import torch, triton; assert torch.version.cuda, 'torch is not a CUDA build'; print('torch', torch.__version__, 'CUDA', torch.version.cuda, 'triton', triton.__version__)"

# ---- venv-cpu: CPU-only torch from the PyTorch CPU index ----------------------------------------------
FROM ${PYTHON_IMAGE} AS venv-cpu
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
COPY constraints.txt /tmp/constraints.txt
COPY --from=wheel /wheels /tmp/wheels
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --index-url "${TORCH_INDEX_URL}" -c /tmp/constraints.txt torch \
 && /opt/venv/bin/pip install -c /tmp/constraints.txt /tmp/wheels/gsic-*.whl \
 && /opt/venv/bin/pip check \
 && /opt/venv/bin/python -c "import torch, triton; assert torch.version.cuda is None, 'expected the CPU build of torch'; print('torch', torch.__version__, 'triton', triton.__version__)"

# ---- runtime-base: user, writable directories, environment ------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime-base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    HOME=/home/gsic \
    GSIC_DATA_DIR=/data \
    NUMBA_CACHE_DIR=/var/cache/gsic/numba \
    TRITON_CACHE_DIR=/var/cache/gsic/triton
# Group 0 owns the writable paths too, so an arbitrary --user UID:0 (OpenShift style) can still write them.
RUN groupadd --gid 10001 gsic \
 && useradd --uid 10001 --gid gsic --home-dir /home/gsic --create-home --shell /usr/sbin/nologin gsic \
 && mkdir -p /data /var/cache/gsic/numba /var/cache/gsic/triton \
 && chown -R gsic:0 /data /var/cache/gsic /home/gsic \
 && chmod -R g=u /data /var/cache/gsic /home/gsic

FROM runtime-base AS runtime-cpu

FROM runtime-base AS runtime-gpu
# The driver's capabilities the NVIDIA runtime mounts (--gpus all chooses the devices).
ENV NVIDIA_DRIVER_CAPABILITIES=compute,utility
# Triton builds its CUDA launcher stub at run time (gcc -shared -fPIC, against Python.h, which the python
# image ships, and libcuda.so.1, which the NVIDIA runtime mounts); the probe below builds a shared object the
# same way. No apt version pins: Debian replaces superseded versions in the archive, so pins break the build.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/* \
 && printf '#include <Python.h>\nint probe(void) { return Py_IsInitialized(); }\n' > /tmp/probe.c \
 && gcc /tmp/probe.c -O3 -shared -fPIC -o /tmp/probe.so \
        -I"$(python -c 'import sysconfig; print(sysconfig.get_paths()["include"])')" \
 && rm /tmp/probe.c /tmp/probe.so

# ---- the service: VARIANT (gpu | cpu) picks the venv and the runtime stage ---------------------------
# These FROM lines name stages of this file, not images, so DL3006 (tag the image) does not apply.
# hadolint ignore=DL3006
FROM venv-${VARIANT} AS venv
# hadolint ignore=DL3006
FROM runtime-${VARIANT} AS service
COPY --from=venv /opt/venv /opt/venv
WORKDIR /home/gsic
# Numeric, so that runAsNonRoot-style checks can see it is not root (10001 = gsic, created above).
USER 10001:10001
# The SQLite job store (GSIC_DATA_DIR); mount a named volume here to keep jobs across upgrades.
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
ENTRYPOINT ["gsic"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
