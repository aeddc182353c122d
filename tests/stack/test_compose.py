"""docker-compose.yml, the stack's Dagster instance and its Dockerfile hold together.

Where a Docker client with the compose plugin exists, `docker compose config` resolves the file
(interpolation, anchors, overrides); otherwise the same checks run on the YAML resolved here
against .env.example. No container is started.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO_ROOT

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
CPU_OVERRIDE = REPO_ROOT / "docker" / "compose.cpu.yml"
ENV_EXAMPLE = REPO_ROOT / ".env.example"
DOCKERFILE = REPO_ROOT / "docker" / "Dockerfile"
INSTANCE_YAML = REPO_ROOT / "docker" / "dagster" / "dagster.yaml"
INSTANCE_CPU_YAML = REPO_ROOT / "docker" / "dagster" / "dagster.cpu.yaml"
STACK_WORKSPACE = REPO_ROOT / "docker" / "dagster" / "workspace.yaml"
INSTANCE_PATH_IN_CONTAINER = "/opt/dagster/dagster_home/dagster.yaml"

# the seed guide's ports and service names, and the Dagster UI
SEED_PORTS = {5000, 9000, 9001, 8888, 16686, 4317, 4318, 3000}
SEED_SERVICES = {"llmrouter-trainer", "model-deployer", "mlflow", "minio", "jupyter"}
STACK_SERVICES = {
    "postgres",
    "minio-init",
    "jaeger",
    "routeiq-code",
    "dagster-webserver",
    "dagster-daemon",
}
SECRETS = {"POSTGRES_PASSWORD", "MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"}
VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


class _ComposeLoader(yaml.SafeLoader):
    """YAML loader that knows compose's `!reset` tag (it clears a key in an override)."""


_ComposeLoader.add_constructor("!reset", lambda loader, node: None)


def _load(path: Path) -> dict[str, Any]:
    return yaml.load(path.read_text(), Loader=_ComposeLoader)


def _read_env_file(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip()
    return env


def _interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's variable substitution: ${VAR}, ${VAR:-default}, ${VAR:?error}, $$."""
    if isinstance(value, dict):
        return {k: _interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        current = env.get(name)
        if op == ":-" and not current:
            return arg
        if op == ":?" and not current:
            raise ValueError(f"required variable {name} is missing: {arg}")
        return current or ""

    return VAR.sub(substitute, value.replace("$$", "\x00")).replace("\x00", "$")


def _compose_cli() -> list[str] | None:
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    ):
        return [docker, "compose"]
    return None


def _resolved(env_file: Path, *overrides: Path) -> dict[str, Any]:
    """The compose model after interpolation: from `docker compose config`, else from the YAML."""
    cli = _compose_cli()
    files = [COMPOSE_FILE, *overrides]
    if cli:
        cmd = [*cli, "--env-file", str(env_file)]
        for path in files:
            cmd += ["-f", str(path)]
        out = subprocess.run(
            [*cmd, "config", "--format", "json"],
            capture_output=True,
            text=True,
            cwd=REPO_ROOT,
            env={k: v for k, v in os.environ.items() if k not in _read_env_file(ENV_EXAMPLE)},
        )
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)
    assert not overrides, "overrides are merged only by the real compose client"
    return _interpolate(_load(COMPOSE_FILE), _read_env_file(env_file))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return _resolved(ENV_EXAMPLE)


def _published_ports(service: dict) -> set[tuple[int, int]]:
    pairs = set()
    for port in service.get("ports", []):
        if isinstance(port, dict):
            pairs.add((int(port["published"]), int(port["target"])))
        else:
            host, _, container = str(port).rpartition(":")
            pairs.add((int(host), int(container)))
    return pairs


def _build_target(service: dict) -> str | None:
    build = service.get("build")
    return build.get("target") if isinstance(build, dict) else None


def _dockerfile_stages() -> set[str]:
    return set(re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", DOCKERFILE.read_text(), re.M | re.I))


def _mounts(service: dict) -> dict[str, str]:
    """container path -> source (host path or volume name)."""
    mounts = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            mounts[volume["target"]] = volume["source"]
        else:
            source, target = volume.split(":")[:2]
            mounts[target] = source
    return mounts


def test_services_ports_and_images(compose):
    services = compose["services"]
    assert set(services) >= SEED_SERVICES | STACK_SERVICES
    published = set().union(*(_published_ports(s) for s in services.values()))
    assert {host for host, _ in published} >= SEED_PORTS
    # the seed's ports are the services' own ports, not remapped
    for host, container in published:
        assert host == container, f"port {host} is mapped to {container}"
    stages = _dockerfile_stages()
    for name, service in services.items():
        assert service.get("image") or service.get("build"), f"{name} has no image or build"
        target = _build_target(service)
        if service.get("build"):
            dockerfile = service["build"].get("dockerfile", "Dockerfile")
            assert (REPO_ROOT / dockerfile).exists() or Path(dockerfile).exists(), name
            assert target in stages, f"{name} builds target {target!r}, not in {stages}"
    trainer_image = services["routeiq-code"]["image"]
    assert _build_target(services["routeiq-code"]) == "trainer"
    for name in ("llmrouter-trainer", "model-deployer"):
        assert services[name]["image"] == trainer_image, name


def test_dockerfile_copies_what_exists():
    text = DOCKERFILE.read_text()
    sources = []
    for line in re.findall(r"^COPY\s+(.+)$", text, re.M):
        parts = [p for p in line.split() if not p.startswith("--")]
        sources += parts[:-1]
    assert sources, "the Dockerfile copies nothing"
    for source in sources:
        assert (REPO_ROOT / source).exists(), f"Dockerfile copies {source}, which does not exist"
    # the seed's paths: configs under /app/configs in the trainer image
    assert re.search(r"WORKDIR /app\n(.*\n)*COPY configs \./configs", text)


def test_healthchecks_and_dependencies(compose):
    services = compose["services"]
    one_shot = {n for n, s in services.items() if s.get("restart") in ("no", None)}
    assert one_shot == {"minio-init", "mlflow-init"}
    for name, service in services.items():
        if name not in one_shot:
            assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        for dep, spec in (service.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown service {dep}"
            condition = spec["condition"]
            if condition == "service_healthy":
                assert services[dep].get("healthcheck"), f"{name} waits for {dep}'s health"
            elif condition == "service_completed_successfully":
                assert dep in one_shot, f"{name} waits for {dep} to exit"
    # start order: storage before Dagster, buckets before MLflow, code server before the UI
    deps = {n: set(s.get("depends_on") or {}) for n, s in services.items()}
    assert "postgres" in deps["dagster-webserver"] and "postgres" in deps["dagster-daemon"]
    assert "routeiq-code" in deps["dagster-webserver"] and "routeiq-code" in deps["dagster-daemon"]
    assert {"postgres", "minio-init"} <= deps["mlflow"]
    assert deps["minio-init"] == {"minio"}


def test_mounted_files_exist(compose):
    for name, service in compose["services"].items():
        for target, source in _mounts(service).items():
            if source.startswith((".", "/")) and not source.startswith("/var/run"):
                host = (REPO_ROOT / source).resolve() if source.startswith(".") else Path(source)
                assert host.exists(), f"{name} mounts {source} at {target}: missing"


def test_environment_from_env_example():
    referenced = {m.group(1) for m in VAR.finditer(COMPOSE_FILE.read_text())}
    example = _read_env_file(ENV_EXAMPLE)
    assert referenced - set(example) == set(), "variables missing from .env.example"
    # secrets have no default in the compose file and only placeholders in .env.example
    for match in VAR.finditer(COMPOSE_FILE.read_text()):
        if match.group(1) in SECRETS:
            assert match.group(2) == ":?", f"{match.group(0)}: a secret needs ${{VAR:?...}}"
    for key in SECRETS - {"MINIO_ROOT_USER"}:
        assert "change-me" in example[key]
    # without a .env the stack refuses to start rather than run with a made-up password
    with pytest.raises(ValueError, match="POSTGRES_PASSWORD"):
        _interpolate(_load(COMPOSE_FILE), {})


def test_jupyter_token_from_the_environment():
    raw = _load(COMPOSE_FILE)["services"]["jupyter"]["environment"]["JUPYTER_TOKEN"]
    secrets = {"POSTGRES_PASSWORD": "p", "MINIO_ROOT_USER": "u", "MINIO_ROOT_PASSWORD": "pw"}
    assert _interpolate(raw, secrets) == "llmrouter"  # the seed's token, locally only
    assert _interpolate(raw, {**secrets, "JUPYTER_TOKEN": "s3cret"}) == "s3cret"


def test_platform_settings_point_at_the_stack(compose):
    services = compose["services"]
    env = services["routeiq-code"]["environment"]
    assert env["ROUTEIQ_MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert env["ROUTEIQ_S3_ENDPOINT_URL"] == env["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert (
        env["ROUTEIQ_ARTIFACT_STORE"]
        == f"s3://{services['minio-init']['environment']['MODELS_BUCKET']}"
    )
    assert env["ROUTEIQ_JAEGER_URL"] == "http://jaeger:16686"
    # the platform's own settings model accepts what the stack sets
    from routeiq_assets.settings import RouteIQSettings

    routeiq = {k[len("ROUTEIQ_") :].lower(): v for k, v in env.items() if k.startswith("ROUTEIQ_")}
    described = RouteIQSettings(**routeiq).describe()
    assert described["artifact_store_kind"] == "s3"
    assert described["mlflow_tracking_uri"] == "http://mlflow:5000"
    # runs, the code server, the trainer and Jupyter share one data volume at ROUTEIQ_HOME
    for name in ("routeiq-code", "llmrouter-trainer", "model-deployer", "jupyter"):
        assert _mounts(services[name])[env["ROUTEIQ_HOME"]] == "routeiq-data", name
    # every service that runs Dagster (or `routeiq ingest`) uses the stack's Postgres instance
    for name in ("routeiq-code", "dagster-webserver", "dagster-daemon", "llmrouter-trainer"):
        source = _mounts(services[name])[INSTANCE_PATH_IN_CONTAINER]
        assert source.endswith("docker/dagster/dagster.yaml"), name


def test_trainer_service_requests_gpus(compose):
    devices = compose["services"]["llmrouter-trainer"]["deploy"]["resources"]["reservations"]
    assert any("gpu" in d["capabilities"] for d in devices["devices"])


def test_stack_workspace_points_at_the_code_server(compose):
    location = yaml.safe_load(STACK_WORKSPACE.read_text())["load_from"][0]["grpc_server"]
    code = compose["services"]["routeiq-code"]
    command = code["command"]
    assert location["host"] == "routeiq-code"
    assert str(location["port"]) == command[command.index("-p") + 1]
    assert location["location_name"] == command[command.index("--location-name") + 1]
    assert "routeiq_assets.definitions" in command


def test_stack_instance_config_is_valid_dagster_config():
    from dagster._core.instance.config import dagster_instance_config

    config, _ = dagster_instance_config(str(INSTANCE_YAML.parent), INSTANCE_YAML.name)
    assert "postgres" in config["storage"]
    local = yaml.safe_load((REPO_ROOT / "dagster_home" / "dagster.yaml").read_text())
    stack = yaml.safe_load(INSTANCE_YAML.read_text())
    assert stack["run_coordinator"] == local["run_coordinator"]
    assert stack["concurrency"] == local["concurrency"]
    limits = {t["key"]: t["limit"] for t in stack["concurrency"]["runs"]["tag_concurrency_limits"]}
    assert limits == {"routeiq/duckdb": 1, "routeiq/gpu": 1}


def test_run_launcher_starts_trainer_containers_with_gpus(compose, monkeypatch):
    """The daemon's DockerRunLauncher, built from the stack's config and the daemon's
    environment: trainer image, the stack's network and volume, every env var it forwards
    defined, and a GPU device request docker-py accepts."""
    import docker.types
    from dagster._config import process_config
    from dagster._core.utils import parse_env_var
    from dagster_docker import DockerRunLauncher

    launcher_config = yaml.safe_load(INSTANCE_YAML.read_text())["run_launcher"]
    assert (launcher_config["module"], launcher_config["class"]) == (
        "dagster_docker",
        "DockerRunLauncher",
    )
    services = compose["services"]
    daemon_env = services["dagster-daemon"]["environment"]
    for key in list(os.environ):
        monkeypatch.delenv(key)
    for key, value in daemon_env.items():
        monkeypatch.setenv(key, value or "")
    processed = process_config(DockerRunLauncher.config_type(), launcher_config["config"])
    assert processed.success, processed.errors
    launcher = DockerRunLauncher.from_config_value(None, processed.value)

    assert launcher.image == services["routeiq-code"]["image"]
    # the code server names the same image for its runs (it takes precedence over the launcher's)
    assert services["routeiq-code"]["environment"]["DAGSTER_CURRENT_IMAGE"] == launcher.image
    assert launcher.networks == [compose["networks"]["default"]["name"]]
    forwarded = dict(parse_env_var(v) for v in launcher.env_vars)
    assert forwarded["DAGSTER_POSTGRES_HOSTNAME"] == "postgres"
    assert forwarded["ROUTEIQ_MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    volume, _, path = launcher.container_kwargs["volumes"][0].partition(":")
    assert compose["volumes"]["routeiq-data"]["name"] == volume
    assert path == daemon_env["ROUTEIQ_HOME"]
    host_config = docker.types.HostConfig(
        version="1.43", device_requests=launcher.container_kwargs["device_requests"]
    )
    (request,) = host_config["DeviceRequests"]
    assert request["Driver"] == "nvidia" and request["Count"] == -1
    assert request["Capabilities"] == [["gpu"]]


def test_cpu_instance_is_the_same_without_gpus():
    gpu, cpu = (
        yaml.safe_load(INSTANCE_YAML.read_text()),
        yaml.safe_load(INSTANCE_CPU_YAML.read_text()),
    )
    assert "device_requests" not in cpu["run_launcher"]["config"]["container_kwargs"]
    del gpu["run_launcher"]["config"]["container_kwargs"]["device_requests"]
    assert gpu == cpu
    override = _load(CPU_OVERRIDE)["services"]
    main = _load(COMPOSE_FILE)["services"]
    assert set(override) <= set(main)
    assert (
        "deploy" in override["llmrouter-trainer"]
        and override["llmrouter-trainer"]["deploy"] is None
    )
    for name in ("routeiq-code", "dagster-webserver", "dagster-daemon"):
        mounts = _mounts(override[name])
        assert mounts[INSTANCE_PATH_IN_CONTAINER] == "./docker/dagster/dagster.cpu.yaml", name
        assert _mounts(main[name])[INSTANCE_PATH_IN_CONTAINER] == "./docker/dagster/dagster.yaml"
    if _compose_cli():
        merged = _resolved(ENV_EXAMPLE, CPU_OVERRIDE)["services"]
        assert not merged["llmrouter-trainer"].get("deploy")
        assert _mounts(merged["dagster-daemon"])[INSTANCE_PATH_IN_CONTAINER].endswith(
            "dagster.cpu.yaml"
        )
