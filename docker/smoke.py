"""Build the service image on a real Docker engine and run it end to end; remove what it made.

    .venv/bin/python docker/smoke.py              # cpu variant: build, run, encode, restart, recreate, stop, compose
    .venv/bin/python docker/smoke.py --variant gpu  # gpu variant: build only (its checks run at build time)

For a machine that reaches the package index but no image registry and no PyTorch index (like the
project's CI machines), the script supplies what the Dockerfile's build arguments ask for, without changing
the Dockerfile:
  * PYTHON_IMAGE: a local base with the python image's layout (python, pip, venv, Python.h), made once with
    debootstrap and `docker import`, with this machine's CA bundle (pip's `cert` setting) baked in, since the
    package index answers only with it. The base image is kept for the next run.
  * TORCH_INDEX_URL (cpu): a PEP 503 index on loopback holding the CPU torch wheel from pip's find-links
    directory and the wheels torch depends on (`pip download`), so the build runs with `--network host`.
What the run needs from the machine beyond a Docker engine comes from Debian's packages: a missing
`debootstrap` is installed with apt-get (as root). The compose step needs Compose v2 >= 2.24 (`docker
compose`); without it, Debian's `docker-compose` package is installed where it is that version (Debian 13 on),
and where it is not (Debian 12 packages Compose v1, which cannot read compose.yaml) the step is skipped with
the reason printed. Each step is printed; any failed check stops the run with a non-zero exit status.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from codec import load_image, psnr  # noqa: E402  (the repository root is not on sys.path when run as a script)

BASE_IMAGE = "gsic-smoke-base:bookworm"
BASE_PYTHON = "3.11"  # bookworm's python3; the torch wheels are chosen for it
BASE_PACKAGES = "python3,python3-venv,python3-pip,python-is-python3,libpython3-dev,ca-certificates"
IMAGE = "gsic:smoke-{variant}"
NAME = "gsic-smoke"
VOLUME = "gsic-smoke-data"
COMPOSE_PROJECT = "gsic-smoke"
STOP_GRACE = 40  # seconds, as docker/README.md and compose.yaml give it
HEALTHY_WITHIN = 240  # the HEALTHCHECK's 60 s start period and 3 x 30 s retries, with room for a slow host
ENCODE_WITHIN = 900
FIXTURE = ROOT / "tests" / "fixtures" / "kodim23_crop96x64.png"
MIN_PSNR = 20.0  # a 400-iteration encode of this crop lands well above; a broken decode lands far below
MIN_COMPOSE = (2, 24)  # the generated override file uses !override; Compose v1 rejects compose.yaml's `name:`


def step(message: str) -> None:
    print(f"==> {message}", flush=True)


def run(*args: str, **kwargs) -> str:
    kwargs.setdefault("check", True)
    kwargs.setdefault("stdout", subprocess.PIPE)
    return (subprocess.run(args, text=True, **kwargs).stdout or "").strip()


def check(condition: bool, message: str) -> None:
    if not condition:
        raise SystemExit(f"FAILED: {message}")


def pip_setting(name: str) -> str | None:
    """A value of pip's own configuration (global section first), e.g. ``cert`` or ``find-links``."""
    values = {}
    for line in run(sys.executable, "-m", "pip", "config", "list").splitlines():
        key, _, value = line.partition("=")
        values[key] = value.strip("'\"")
    return next((values[key] for key in (f"global.{name}", f":env:.{name}") if values.get(key)), None)


def version_tuple(text: str) -> tuple[int, ...]:
    """(2, 26, 1) of "v2.26.1", "2.26.1-4" or "1:2.26.1+ds1-4" (a Debian epoch and revision)."""
    numbers = re.match(r"v?(\d+(?:\.\d+)*)", text.split(":", 1)[-1].strip())
    return tuple(int(part) for part in numbers[1].split(".")) if numbers else ()


@functools.cache
def _apt_lists_updated() -> None:
    run("apt-get", "update", "-qq", env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}, stdout=subprocess.DEVNULL)


def apt_candidate(package: str) -> str | None:
    """The version apt-get would install, or None (no apt here, or no such package)."""
    if shutil.which("apt-cache") is None:
        return None
    if os.geteuid() == 0:
        _apt_lists_updated()  # a fresh machine's package lists may be empty
    found = re.search(r"Candidate: (\S+)", run("apt-cache", "policy", package, check=False))
    return None if found is None or found[1] == "(none)" else found[1]


def apt_install(*packages: str) -> None:
    """Install Debian packages this run needs, or stop saying how to."""
    command = f"apt-get install {' '.join(packages)}"
    check(shutil.which("apt-get") is not None, f"this run needs {' '.join(packages)}; install it ({command})")
    check(os.geteuid() == 0, f"this run needs {' '.join(packages)}; run it as root, or first: sudo {command}")
    step(command)
    _apt_lists_updated()
    run("apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}, stdout=subprocess.DEVNULL)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Docker:
    """The docker client, with BuildKit: the Dockerfile picks its stages by VARIANT, which only BuildKit skips."""

    def __init__(self):
        self.exe, self.env = self._client()

    @staticmethod
    def _client() -> tuple[str, dict[str, str]]:
        # A client >= 23 builds with BuildKit only through the buildx plugin; an older one has BuildKit
        # built in (DOCKER_BUILDKIT=1). A machine may carry both kinds on PATH: take the first that builds.
        paths = (Path(directory) / "docker" for directory in os.environ["PATH"].split(os.pathsep))
        env = {**os.environ, "DOCKER_BUILDKIT": "1"}
        for exe in dict.fromkeys(str(path.resolve()) for path in paths if path.is_file()):
            if subprocess.run([exe, "buildx", "version"], capture_output=True).returncode == 0:
                return exe, env
            version = run(exe, "version", "--format", "{{.Client.Version}}", check=False, stderr=subprocess.DEVNULL)
            if version and int(version.split(".")[0]) < 23:
                return exe, env
        raise SystemExit("no docker client here can build with BuildKit (install buildx)")

    def __call__(self, *args: str, check: bool = True, **kwargs) -> str:
        return run(self.exe, *args, check=check, env=self.env, **kwargs)

    def ok(self, *args: str) -> bool:
        return subprocess.run([self.exe, *args], capture_output=True, env=self.env).returncode == 0

    def state(self, name: str) -> dict:
        return json.loads(self("inspect", "--format", "{{json .State}}", name))

    def size_mb(self, image: str) -> float:
        return int(self("image", "inspect", "--format", "{{.Size}}", image)) / 1e6


def ensure_base_image(docker: Docker) -> None:
    if docker.ok("image", "inspect", BASE_IMAGE):
        step(f"base image {BASE_IMAGE}: reused ({docker.size_mb(BASE_IMAGE):.0f} MB)")
        return
    step(f"base image {BASE_IMAGE}: debootstrap bookworm ({BASE_PACKAGES})")
    if shutil.which("debootstrap") is None:
        apt_install("debootstrap")
    cert = pip_setting("cert")
    with tempfile.TemporaryDirectory(prefix="gsic-base-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        run("debootstrap", "--variant=minbase", f"--include={BASE_PACKAGES}", "bookworm", str(rootfs),
            stdout=subprocess.DEVNULL)
        if cert:  # where the package index answers only with this machine's CA bundle, the image trusts it too
            shutil.copyfile(cert, rootfs / "etc/ssl/certs/ca-certificates.crt")
            (rootfs / "etc/pip.conf").write_text("[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n")
        shutil.rmtree(rootfs / "var/cache/apt/archives", ignore_errors=True)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        # The python image's environment: PATH (the Dockerfile appends to it) and a UTF-8 locale.
        subprocess.run([docker.exe, "import", "--change", "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:"
                        "/usr/bin:/sbin:/bin", "--change", "ENV LANG=C.UTF-8", "--change", 'CMD ["python3"]',
                        "-", BASE_IMAGE], stdin=tar.stdout, check=True, stdout=subprocess.DEVNULL)
        check(tar.wait() == 0, "tar of the debootstrap tree failed")
    version = docker("run", "--rm", BASE_IMAGE, "python", "--version")
    step(f"base image {BASE_IMAGE}: {version}, {docker.size_mb(BASE_IMAGE):.0f} MB")


def torch_pin() -> str:
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", (ROOT / "constraints.txt").read_text(), re.MULTILINE))
    return pins["torch"]


@contextlib.contextmanager
def local_torch_index(workdir: Path):
    """A PEP 503 index on loopback: CPU torch from pip's find-links directory and its dependencies."""
    version = torch_pin()
    cp = "cp" + BASE_PYTHON.replace(".", "")
    find_links = pip_setting("find-links")
    check(find_links is not None, "pip's configuration names no find-links directory (the CPU torch wheel)")
    wheels = sorted(Path(find_links).glob(f"torch-{version}+cpu-{cp}-{cp}-*x86_64.whl"))
    check(bool(wheels), f"no torch {version}+cpu wheel for {cp} in pip's find-links directory")
    files = workdir / "files"
    step(f"local torch index: {wheels[0].name} and its dependencies (pip download)")
    run(sys.executable, "-m", "pip", "download", "--quiet", "--dest", str(files), "--only-binary=:all:",
        "--python-version", BASE_PYTHON, "--implementation", "cp", "--platform", "manylinux_2_28_x86_64",
        "--platform", "manylinux_2_17_x86_64", "--platform", "manylinux2014_x86_64",
        "-c", str(ROOT / "constraints.txt"), str(wheels[0]))
    simple = workdir / "simple"
    for wheel in files.glob("*.whl"):
        project = re.sub(r"[-_.]+", "-", wheel.name.split("-")[0]).lower()  # PEP 503 normalised name
        (simple / project).mkdir(parents=True, exist_ok=True)
        wheel.rename(simple / project / wheel.name)
    port = free_port()
    # http.server's directory listings are the simple pages: one link per file.
    server = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port),
                               "--directory", str(workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/simple/"
        deadline = time.monotonic() + 30
        while not _answers(url) and time.monotonic() < deadline:
            time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def build(docker: Docker, variant: str, torch_index: str | None) -> str:
    image = IMAGE.format(variant=variant)
    args = ["build", "--network", "host", "--build-arg", f"PYTHON_IMAGE={BASE_IMAGE}",
            "--build-arg", f"VARIANT={variant}", "-t", image, str(ROOT)]
    if torch_index:
        args[1:1] = ["--build-arg", f"TORCH_INDEX_URL={torch_index}"]
    step(f"docker build {variant} variant -> {image}")
    started = time.monotonic()
    docker(*args, stdout=None)
    step(f"built {image} in {time.monotonic() - started:.0f} s; image size {docker.size_mb(image):.0f} MB")
    return image


def wait_healthy(docker: Docker, name: str, after: str = "") -> None:
    """Until Docker's own HEALTHCHECK says healthy (for a start later than ``after``)."""
    deadline = time.monotonic() + HEALTHY_WITHIN
    started = time.monotonic()
    while True:
        state = docker.state(name)
        health = state.get("Health", {}).get("Status")
        if state["Status"] != "running":
            docker("logs", "--tail", "40", name, check=False, stdout=None)
            raise SystemExit(f"FAILED: {name} is {state['Status']} (exit code {state['ExitCode']}); log above")
        check(health != "unhealthy", f"{name} is unhealthy: {state['Health']['Log'][-1:]}")
        if health == "healthy" and state["StartedAt"] != after:
            step(f"{name}: health status healthy after {time.monotonic() - started:.0f} s")
            return
        check(time.monotonic() < deadline, f"{name} not healthy within {HEALTHY_WITHIN} s (is {health})")
        time.sleep(1)


def start_service(docker: Docker, image: str, port: int) -> None:
    step(f"docker run {image} as {NAME}: volume {VOLUME} at /data, 127.0.0.1:{port} -> 8000")
    docker("run", "-d", "--name", NAME, "-p", f"127.0.0.1:{port}:8000", "-v", f"{VOLUME}:/data",
           "--stop-timeout", str(STOP_GRACE), image, stdout=subprocess.DEVNULL)
    wait_healthy(docker, NAME)


def wait_job(client: httpx.Client, job: str, until: tuple[str, ...]) -> dict:
    deadline = time.monotonic() + ENCODE_WITHIN
    while (body := client.get(job).raise_for_status().json())["status"] not in until:
        check(body["status"] not in ("failed", "canceled"), f"job {body['status']}: {body.get('error')}")
        check(time.monotonic() < deadline, f"job still {body['status']} after {ENCODE_WITHIN} s")
        time.sleep(1)
    return body


def submit(client: httpx.Client, **form: str) -> str:
    response = client.post("/encode", files={"file": (FIXTURE.name, FIXTURE.read_bytes(), "image/png")}, data=form)
    check(response.status_code == 202, f"POST /encode answered {response.status_code}: {response.text}")
    return response.headers["location"]


def encode_and_decode(client: httpx.Client) -> tuple[str, bytes]:
    step(f"POST /encode {FIXTURE.name} (preset medium, 400 iterations), poll, GET result, POST /decode")
    job = submit(client, preset="medium", iterations="400")
    body = wait_job(client, job, until=("succeeded",))
    stream = client.get(body["result"]["url"]).raise_for_status().content
    check(len(stream) == body["result"]["bytes"], "the result's size differs from the job's report")
    png = client.post("/decode", content=stream, headers={"content-type": "application/octet-stream"})
    check(png.status_code == 200 and png.headers["content-type"] == "image/png", f"/decode: {png.status_code}")
    decoded = np.asarray(Image.open(io.BytesIO(png.content)).convert("RGB"))
    measured = psnr(load_image(FIXTURE), decoded)
    step(f"{job}: {len(stream)} bytes, {body['result']['bpp']:.3f} bpp, decoded PNG {measured:.2f} dB "
         f"(job reports {body['result']['psnr']:.2f} dB, encoded on {body['result']['device']} "
         f"in {body['result']['seconds']:.1f} s)")
    check(abs(measured - body["result"]["psnr"]) < 0.01, "the decoded PNG's PSNR is not the job's")
    check(measured > MIN_PSNR, f"PSNR {measured:.2f} dB <= {MIN_PSNR} dB")
    return job, stream


def job_survives(client: httpx.Client, job: str, stream: bytes, event: str) -> None:
    body = client.get(job).raise_for_status().json()
    result = client.get(f"{job}/result")
    check(body["status"] == "succeeded" and result.content == stream, f"after {event}: job {body['status']}, "
          f"result {result.status_code} ({len(result.content)} bytes, expected {len(stream)})")
    step(f"after {event}: {job} still succeeded, result identical ({len(stream)} bytes)")


def stop_cleanly(docker: Docker) -> None:
    started = time.monotonic()
    docker("stop", "-t", str(STOP_GRACE), NAME, stdout=subprocess.DEVNULL)
    elapsed = time.monotonic() - started
    state = docker.state(NAME)
    step(f"docker stop (SIGTERM): exited with {state['ExitCode']} after {elapsed:.1f} s")
    check(state["ExitCode"] == 0 and elapsed < STOP_GRACE, f"no clean exit within {STOP_GRACE} s: {state}")


def smoke_cpu(docker: Docker, image: str) -> None:
    port = free_port()
    docker("volume", "create", VOLUME, stdout=subprocess.DEVNULL)
    start_service(docker, image, port)
    uid = docker("exec", NAME, "sh", "-c", "awk '/^Uid:/ {print $2}' /proc/1/status; stat -c %u /data")
    step(f"PID 1 runs as UID {uid.split()[0]}; /data on the new volume is owned by UID {uid.split()[1]}")
    check(uid.split() == ["10001", "10001"], f"expected UID 10001 for the process and /data: {uid.split()}")

    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        job, stream = encode_and_decode(client)

        before = docker.state(NAME)["StartedAt"]
        step("docker restart")
        docker("restart", "-t", str(STOP_GRACE), NAME, stdout=subprocess.DEVNULL)
        wait_healthy(docker, NAME, after=before)
        job_survives(client, job, stream, "docker restart")

        step("docker rm, then docker run again on the same volume")
        docker("stop", "-t", str(STOP_GRACE), NAME, stdout=subprocess.DEVNULL)
        docker("rm", NAME, stdout=subprocess.DEVNULL)
        start_service(docker, image, port)
        job_survives(client, job, stream, "re-creating the container")

        step("a long encode running, then docker stop: SIGTERM drains and requeues it")
        running = submit(client, preset="medium", iterations="20000")
        wait_job(client, running, until=("running",))
        stop_cleanly(docker)
        before = docker.state(NAME)["StartedAt"]
        docker("start", NAME, stdout=subprocess.DEVNULL)
        wait_healthy(docker, NAME, after=before)
        body = client.get(running).raise_for_status().json()
        step(f"after the restart: {running} is {body['status']}, attempts {body['attempts']}")
        check(body["status"] in ("queued", "running") and body["attempts"] >= 1 and body["error"] is None,
              f"the interrupted encode was not requeued: {body}")
        check(client.delete(running).status_code in (200, 202), "DELETE of the requeued job failed")
    stop_cleanly(docker)
    docker("rm", NAME, stdout=subprocess.DEVNULL)


def compose_unavailable(docker: Docker) -> str | None:
    """None when `docker compose` is Compose v2 >= MIN_COMPOSE (installing Debian's docker-compose where that
    package is such a version); otherwise why the compose step cannot run here."""
    wanted = ".".join(map(str, MIN_COMPOSE))
    if not docker.ok("compose", "version"):
        candidate = apt_candidate("docker-compose")
        if candidate is None or version_tuple(candidate) < MIN_COMPOSE:
            packaged = f"Debian's docker-compose here is {candidate}" if candidate else "apt offers no docker-compose"
            return f"docker has no compose plugin, and {packaged}, not Compose v2 >= {wanted}"
        apt_install("docker-compose")
    version = docker("compose", "version", "--short", check=False, stderr=subprocess.DEVNULL)
    if version_tuple(version) < MIN_COMPOSE:
        return f"docker compose is {version or 'not working'}, not Compose v2 >= {wanted}"
    return None


def smoke_compose(docker: Docker, image: str, workdir: Path) -> None:
    reason = compose_unavailable(docker)
    if reason is not None:
        step(f"docker compose: SKIPPED, {reason} (the checks above ran on plain docker)")
        return
    files = ["-f", str(ROOT / "docker/compose.yaml")]
    step("docker compose config: compose.yaml, and with compose.cpu.yaml")
    docker("compose", *files, "config", "--quiet")
    files += ["-f", str(ROOT / "docker/compose.cpu.yaml")]
    docker("compose", *files, "config", "--quiet")
    # This run's image and a free loopback port instead of the file's 8000 on every interface.
    port = free_port()
    smoke = workdir / "compose.smoke.yaml"
    smoke.write_text(f'services:\n  gsic:\n    image: {image}\n    ports: !override ["127.0.0.1:{port}:8000"]\n')
    files += ["-f", str(smoke)]
    step(f"docker compose up (cpu override, project {COMPOSE_PROJECT}, 127.0.0.1:{port})")
    try:
        docker("compose", "-p", COMPOSE_PROJECT, *files, "up", "-d", "--no-build", "--wait",
               "--wait-timeout", str(HEALTHY_WITHIN), stdout=subprocess.DEVNULL)
        container = docker("compose", "-p", COMPOSE_PROJECT, *files, "ps", "-q", "gsic")
        state = docker.state(container)
        step(f"compose service gsic: {state['Status']}, health {state['Health']['Status']}")
        check(state["Health"]["Status"] == "healthy", "the compose service is not healthy")
        check(_answers(f"http://127.0.0.1:{port}/healthz"), "the compose service does not answer /healthz")
    finally:
        docker("compose", "-p", COMPOSE_PROJECT, *files, "down", "--volumes", "--timeout", str(STOP_GRACE),
               check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def clean_up(docker: Docker, image: str) -> None:
    step(f"removing {NAME}, {VOLUME} and {image} (the base image {BASE_IMAGE} stays for the next run)")
    for args in (("rm", "-f", NAME), ("volume", "rm", "-f", VOLUME), ("image", "rm", "-f", image)):
        docker(*args, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variant", choices=("cpu", "gpu"), default="cpu")
    variant = parser.parse_args().variant
    docker = Docker()
    step(f"docker client {docker.exe}; engine {docker('version', '--format', '{{.Server.Version}}')}")
    ensure_base_image(docker)
    image = IMAGE.format(variant=variant)
    with tempfile.TemporaryDirectory(prefix="gsic-smoke-") as tmp:
        try:
            if variant == "gpu":  # torch from the package index (the Dockerfile's default TORCH_INDEX_URL)
                build(docker, variant, None)
            else:
                with local_torch_index(Path(tmp)) as index:
                    build(docker, variant, index)
                smoke_cpu(docker, image)
                smoke_compose(docker, image, Path(tmp))
        finally:
            clean_up(docker, image)
    step("smoke run passed")


if __name__ == "__main__":
    main()
