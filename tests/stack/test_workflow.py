"""The example GitHub Actions workflow: its commands are real `routeiq` commands with valid
arguments, on real compose services, and its Dagster selections resolve to the right assets."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import dagster as dg
import pytest
import yaml

from routeiq_assets.cli import build_parser
from tests.conftest import REPO_ROOT

WORKFLOW = REPO_ROOT / ".github" / "workflows" / "train-and-deploy.yml"
COMPOSE_RUN = re.compile(r"docker compose run (?:--rm )?([\w-]+) (.+)")
SHELL_VAR = re.compile(r"\$\{?([A-Z_]+)\}?")
# what the runner's shell puts in place of the variables the commands use
SHELL_VALUES = {"GITHUB_RUN_NUMBER": "7", "GITHUB_RUN_ID": "1234", "MODEL_VERSION": "3"}


@pytest.fixture(scope="module")
def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def _steps(workflow: dict, job: str) -> dict[str, dict]:
    return {step.get("name", step.get("uses")): step for step in workflow["jobs"][job]["steps"]}


def _compose_commands(workflow: dict) -> list[tuple[str, list[str]]]:
    """(service, argv) of every `docker compose run` in the workflow, shell variables as-is."""
    commands = []
    for step in workflow["jobs"]["train"]["steps"]:
        script = step.get("run", "").replace("\\\n", " ")
        for line in script.splitlines():
            match = COMPOSE_RUN.search(line.strip())
            if match:
                command = match.group(2).split(">>")[0]
                command = SHELL_VAR.sub(lambda m: SHELL_VALUES.get(m.group(1), "value"), command)
                argv = shlex.split(command)
                commands.append((match.group(1), argv))
    return commands


def _resolve(selection: str) -> set[str]:
    from routeiq_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    keys = dg.AssetSelection.from_coercible(selection.split(",")).resolve(graph)
    return {key.to_user_string() for key in keys}


def _assets_by_group() -> dict[str, set[str]]:
    from routeiq_assets.definitions import defs

    groups: dict[str, set[str]] = {}
    for node in defs.resolve_asset_graph().asset_nodes:
        groups.setdefault(node.group_name, set()).add(node.key.to_user_string())
    return groups


def test_triggers_and_the_test_job(workflow):
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as true
    assert {"push", "pull_request", "workflow_dispatch"} <= set(triggers)
    assert triggers["push"]["branches"] == ["main"]
    tests = _steps(workflow, "test")
    assert tests["Tests"]["run"] == "bash .ci/run" and tests["Tests"]["env"]["CI"] == "true"
    assert (REPO_ROOT / ".ci" / "run").exists()
    assert workflow["jobs"]["train"]["needs"] == "test"


def test_commands_run_on_compose_services_with_valid_arguments(workflow):
    services = set(yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())["services"])
    commands = _compose_commands(workflow)
    used = {argv[1] for _, argv in commands if argv[0] == "routeiq"}
    assert {"simulate", "ingest", "extract-jaeger", "materialize", "deploy", "route"} <= used
    parser = build_parser()
    for service, argv in commands:
        assert service in services, f"no compose service {service}"
        if argv[0] == "routeiq":
            args = parser.parse_args(argv[1:])  # SystemExit on an unknown flag
            assert args.func
    deploy = next(argv for _, argv in commands if argv[:2] == ["routeiq", "deploy"])
    assert deploy[deploy.index("--model-stage") + 1] == "Production"


def test_training_selection_is_the_graph_after_ingestion_without_deployment(workflow):
    (argv,) = [
        a for _, a in _compose_commands(workflow) if a[:3] == ["dagster", "asset", "materialize"]
    ]
    selected = _resolve(argv[argv.index("--select") + 1])
    groups = _assets_by_group()
    assert groups["routers"] | groups["evaluation"] | {"training_set"} <= selected
    assert not selected & groups["deployment"]
    assert not selected & groups["telemetry"]  # partitioned: ingested by `routeiq ingest`


def test_deployment_only_on_main_with_the_gate_in_the_same_run(workflow):
    steps = _steps(workflow, "train")
    deploys = [s for name, s in steps.items() if name and name.startswith("Deploy Model")]
    assert len(deploys) == 2
    for step in deploys:
        assert "github.ref == 'refs/heads/main'" in step["if"]
    argv = shlex.split(deploys[0]["run"].replace("\\\n", " ").split("model-deployer", 1)[1])
    selected = _resolve(argv[argv.index("--select") + 1])
    assert selected == {"evaluation_report", "deployed_router"}
    assert "main" not in str(steps["Train Router"].get("if", ""))  # training runs on every push


def test_secrets_are_the_stack_variables(workflow):
    env = workflow["jobs"]["train"]["env"]
    example = Path(REPO_ROOT / ".env.example").read_text()
    for key, value in env.items():
        if "secrets." in str(value):
            assert re.search(rf"^{key}=", example, re.M), f"{key} is not a stack variable"
