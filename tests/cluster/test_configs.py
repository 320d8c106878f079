"""The deployment files, checked offline with Ray's and Serve's own validators (no cluster, no Ray).

cluster.yaml / cluster-aws.yaml: the cluster launcher's prepare_config + validate_config.
deploy/serve_config.yaml: Serve's ServeDeploySchema, then its overrides merged into the real
``Ingress`` deployment the way the Serve controller merges them. deploy/rayservice.yaml: its
serveConfigV2 with the same schema, and in step with deploy/serve_config.yaml.
"""

from __future__ import annotations

import copy
import inspect
import json
import os
import re
import sys
from typing import Any

import pytest
import ray
import yaml  # type: ignore[import-untyped]
from ray.autoscaler._private.util import prepare_config, validate_config
from ray.serve.schema import ServeDeploySchema

from actors.placement import HEAD_RESOURCE
from engine.settings import Settings
from tests.cluster.harness import ROOT

pytestmark = pytest.mark.timeout(60)

CLUSTER_FILES = ["cluster.yaml", "cluster-aws.yaml"]
SECRETS = {"OEE_REDIS_URL", "OEE_DATABASE_URL", "OEE_ADMIN_KEY"}
SECRET_NAME = re.compile(r"(URL|KEY|TOKEN|PASSWORD|SECRET)$")


def assert_no_secrets(env: dict[str, str], where: str) -> None:
    """The rule: no store URL, key, token or password in a Serve config's runtime_env (Ray shows and logs
    it); they come from the nodes' environment or a Kubernetes Secret."""
    leaked = sorted(name for name in env if name in SECRETS or SECRET_NAME.search(name))
    assert not leaked, f"{where}: secrets in runtime_env.env_vars: {leaked}"
    assert not any("://" in value and "@" in value for value in env.values()), f"{where}: a URL with credentials"


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / name).read_text())
    return data


def _expected_nodes(config: dict[str, Any]) -> int:
    sys.path.insert(0, str(ROOT / "deploy"))
    try:
        from wait_for_nodes import expected_nodes
    finally:
        sys.path.remove(str(ROOT / "deploy"))
    return expected_nodes(config)


@pytest.mark.parametrize("name", CLUSTER_FILES)
def test_cluster_config_passes_rays_validator(name: str) -> None:
    prepared = prepare_config(copy.deepcopy(_load(name)))
    validate_config(prepared)

    head_type = prepared["available_node_types"][prepared["head_node_type"]]
    head_cmds = " ".join(prepared["head_start_ray_commands"])
    worker_cmds = " ".join(prepared["worker_start_ray_commands"])
    assert "ray start --head --port=6380" in head_cmds  # not 6379: that is Redis's port
    assert "--address=$RAY_HEAD_IP:6380" in worker_cmds
    assert "RAY_health_check_period_ms" in head_cmds
    # Ray's token auth on every node and for the deploy; the dashboard on the head's loopback only
    assert "RAY_AUTH_MODE=disabled" not in head_cmds + worker_cmds
    assert "RAY_AUTH_MODE=token" in head_cmds and "RAY_AUTH_MODE=token" in worker_cmds
    assert re.search(r"RAY_AUTH_MODE=token \.venv/bin/serve deploy", head_cmds)
    assert "--dashboard-host=127.0.0.1" in head_cmds
    assert prepared["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    # the engine's secrets: a file of the operator's, sourced before `ray start`, never in the repo
    assert prepared["file_mounts"]["~/oee-secrets.env"] == "deploy/secrets.env"
    assert "deploy/secrets.env" in (ROOT / ".gitignore").read_text().splitlines()
    for cmds in (head_cmds, worker_cmds):
        assert cmds.index(". ~/oee-secrets.env") < cmds.index("ray start")
    assert any("pip install -q -e ~/oee" in c for c in prepared["setup_commands"])
    assert re.search(r"wait_for_nodes\.py\s+--config ~/ray_bootstrap_config\.yaml.*serve deploy deploy/serve_config\.yaml", head_cmds)
    # The head, and only the head, advertises the singletons' resource.
    declared = re.search(r"--resources='([^']*)'", head_cmds)
    head_resources = json.loads(declared.group(1)) if declared else head_type.get("resources", {})
    assert head_resources == {HEAD_RESOURCE: 1}
    assert HEAD_RESOURCE not in worker_cmds
    assert all(
        HEAD_RESOURCE not in t.get("resources", {}) for n, t in prepared["available_node_types"].items() if n != prepared["head_node_type"]
    )
    # cluster.yaml waits for 1 + len(worker_ips) nodes, cluster-aws.yaml for 1 + min_workers.
    assert _expected_nodes(prepared) == 3
    print(f"{name}: valid; node types {sorted(prepared['available_node_types'])}, deploys once 3 nodes are up")


@pytest.mark.parametrize("name", CLUSTER_FILES)
def test_validator_rejects_a_typo(name: str) -> None:
    """Shows the check above has teeth: a misspelt key fails."""
    config = _load(name)
    config["head_start_ray_command"] = config["head_start_ray_commands"]
    with pytest.raises(Exception, match="head_start_ray_command"):
        validate_config(prepare_config(config))


def _serve_config() -> ServeDeploySchema:
    return ServeDeploySchema.model_validate(_load("deploy/serve_config.yaml"))


def _ingress_with_overrides(app_config: Any) -> Any:
    """The real Ingress deployment (serve_app.build_app) with the config's overrides applied by
    Serve's controller code, without a cluster."""
    from ray.serve._private.application_state import override_deployment_info
    from ray.serve._private.build_app import build_app as serve_build_app
    from ray.serve._private.deploy_utils import deploy_args_to_deployment_info

    import serve_app

    settings = Settings(_env_file=None, redis_url="redis://r:6379/0", database_url="postgresql://p/oee")
    built = serve_build_app(serve_app.build_app(settings), name="oee")
    infos = {
        d.name: deploy_args_to_deployment_info(
            deployment_name=d.name,
            deployment_config_proto_bytes=d._deployment_config.to_proto_bytes(),  # type: ignore[no-untyped-call]
            replica_config_proto_bytes=d._replica_config.to_proto_bytes(),  # type: ignore[no-untyped-call]
            deployer_job_id="",
            app_name="oee",
            ingress=True,
            route_prefix="/",
        )
        for d in built.deployments
    }
    return override_deployment_info(infos, app_config)["Ingress"]


def test_serve_config_is_valid_and_applies_to_the_ingress(monkeypatch: pytest.MonkeyPatch) -> None:
    config = _serve_config()
    assert config.proxy_location.value == "EveryNode"
    [app] = config.applications
    assert app.import_path == "serve_app:build_from_env"
    ingress = _ingress_with_overrides(app)
    scaling = ingress.deployment_config.autoscaling_config
    assert ingress.deployment_config.num_replicas is None and scaling is not None
    assert (scaling.min_replicas, scaling.max_replicas) == (3, 6)  # one replica per node of 3 .. two per node
    assert ingress.replica_config.max_replicas_per_node == 2
    assert ingress.deployment_config.max_ongoing_requests == 2000  # >> 5: each WebSocket holds one
    assert ingress.replica_config.ray_actor_options["num_cpus"] == 0

    env = app.runtime_env["env_vars"]
    assert_no_secrets(env, "deploy/serve_config.yaml")
    for key in list(os.environ):
        if key.startswith("OEE_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings(_env_file=None)
    assert settings.executor_pool_size == 3 and settings.max_concurrent_orders == 30 and settings.rate_limit_per_minute == 100
    assert settings.host == config.http_options.host == "0.0.0.0"
    assert settings.protection_problem() is not None  # deployed without OEE_ADMIN_KEY in the nodes' environment: refused
    monkeypatch.setenv("OEE_ADMIN_KEY", "k" * 32)
    assert Settings(_env_file=None).protection_problem() is None
    per_node = ingress.replica_config.max_replicas_per_node
    print(f"serve_config.yaml: Ingress autoscales {scaling.min_replicas}..{scaling.max_replicas}, at most {per_node} per node")


def test_application_builder_signature() -> None:
    """Serve calls the builder with one argument, the config's ``args``."""
    import serve_app

    builder = getattr(serve_app, "build_from_env", None)
    if builder is None:
        from tests.cluster.serve_builder import build_from_env as builder

        print("serve_app.build_from_env is missing: checking the reference builder in tests/cluster/serve_builder.py")
    assert builder is not None
    assert len(inspect.signature(builder).parameters) == 1


def test_rayservice_manifest_matches_the_serve_config() -> None:
    docs = [d for d in yaml.safe_load_all((ROOT / "deploy" / "rayservice.yaml").read_text()) if d]
    kinds = {d["kind"]: d for d in docs}
    assert set(kinds) == {"Secret", "RayService"}
    service = kinds["RayService"]
    assert service["apiVersion"] == "ray.io/v1"
    serve_v2 = ServeDeploySchema.model_validate(yaml.safe_load(service["spec"]["serveConfigV2"]))
    plain = _serve_config()
    [app_k8s], [app_plain] = serve_v2.applications, plain.applications
    assert app_k8s.deployments == app_plain.deployments
    assert (app_k8s.import_path, app_k8s.route_prefix, serve_v2.proxy_location) == (
        app_plain.import_path,
        app_plain.route_prefix,
        plain.proxy_location,
    )
    env_k8s, env_plain = app_k8s.runtime_env["env_vars"], app_plain.runtime_env["env_vars"]
    assert_no_secrets(env_k8s, "deploy/rayservice.yaml serveConfigV2")
    assert env_k8s == env_plain

    cluster = service["spec"]["rayClusterConfig"]
    assert cluster["rayVersion"] == ray.__version__
    assert cluster["authOptions"] == {"mode": "token"}  # KubeRay makes the token and presents it to the dashboard
    head = cluster["headGroupSpec"]
    assert json.loads(json.loads(head["rayStartParams"]["resources"])) == {HEAD_RESOURCE: 1}
    [workers] = cluster["workerGroupSpecs"]
    assert workers["minReplicas"] == workers["maxReplicas"] == workers["replicas"] == 2
    assert "resources" not in workers["rayStartParams"]
    secret_keys = set(kinds["Secret"]["stringData"])
    for spec in (head["template"]["spec"], workers["template"]["spec"]):
        [container] = spec["containers"]
        from_secret = {e["name"] for e in container["env"] if "valueFrom" in e}
        assert from_secret == secret_keys == SECRETS
        container_env: dict[str, str] = {e["name"]: e.get("value") for e in container["env"] if "value" in e}
        assert "RAY_AUTH_MODE" not in container_env  # authOptions sets it to token; "disabled" must not override it
        assert_no_secrets(container_env, "deploy/rayservice.yaml container env")
    print("rayservice.yaml: serveConfigV2 valid and equal to deploy/serve_config.yaml; secrets from the Secret; token auth on")


def test_the_secret_rule_has_teeth() -> None:
    """What the configs must not hold is caught: a store URL, a key, a URL with credentials."""
    for leaky in ({"OEE_DATABASE_URL": "postgresql://p/oee"}, {"OEE_ADMIN_KEY": "k" * 40}, {"OEE_X": "redis://:pw@r:6379/0"}):
        with pytest.raises(AssertionError):
            assert_no_secrets(leaky, "example")
    assert_no_secrets({"OEE_HOST": "0.0.0.0", "OEE_LOG_LEVEL": "INFO"}, "example")
