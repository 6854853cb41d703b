"""The files in cluster/ are valid before anyone pays for a cluster.

Launcher configs are checked against the JSON schema that ships inside Ray (the one `ray up`
uses) and then for what the schema cannot say. KubeRay manifests are checked by structure.
No Ray instance is started.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import ray
import yaml

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "cluster"
LAUNCHER_CONFIGS = sorted(CLUSTER.glob("*.yaml"))
RAY_SCHEMA = Path(ray.__file__).parent / "autoscaler" / "ray-schema.json"
IMAGE_TAG = re.compile(r"^rayproject/ray:(?P<ray>\d+\.\d+\.\d+)-py(?P<py>\d+)(-gpu)?$")
GPU = "nvidia.com/gpu"


def load_yaml(path: Path) -> dict[str, Any]:
    with path.open() as f:
        return yaml.safe_load(f)


@pytest.fixture(scope="module")
def ray_schema() -> dict[str, Any]:
    schema = json.loads(RAY_SCHEMA.read_text())
    jsonschema.validators.validator_for(schema).check_schema(schema)
    return schema


def schema_errors(config: dict[str, Any], schema: dict[str, Any]) -> list[jsonschema.ValidationError]:
    validator = jsonschema.validators.validator_for(schema)(schema)
    return sorted(validator.iter_errors(config), key=lambda e: [str(p) for p in e.absolute_path])


def test_both_clouds_have_a_launcher_config() -> None:
    assert {p.name for p in LAUNCHER_CONFIGS} >= {"aws.yaml", "gcp.yaml"}


# ---------------------------------------------------------------- Ray cluster launcher configs


@pytest.fixture(params=LAUNCHER_CONFIGS, ids=lambda p: p.name)
def launcher(request: pytest.FixtureRequest) -> dict[str, Any]:
    return load_yaml(request.param)


def worker_types(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    nodes = config["available_node_types"]
    return {name: node for name, node in nodes.items() if name != config["head_node_type"]}


def accelerator_count(node_config: dict[str, Any]) -> int | None:
    """GPUs the machine has, read from the node config; None where the config does not say."""
    if "guestAccelerators" in node_config:  # GCP
        return sum(a["acceleratorCount"] for a in node_config["guestAccelerators"])
    if "InstanceType" in node_config:  # AWS: the g and p families carry GPUs
        return None if re.match(r"^[gp]\d", node_config["InstanceType"]) else 0
    return 0


def test_launcher_config_matches_ray_schema(launcher: dict[str, Any], ray_schema: dict[str, Any]) -> None:
    assert [e.message for e in schema_errors(launcher, ray_schema)] == []


def test_launcher_config_passes_ray_up_validation(launcher: dict[str, Any]) -> None:
    # What `ray up` does before it talks to the cloud: merge the provider's defaults, then validate.
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(copy.deepcopy(launcher)))


def test_head_node_type_exists_and_runs_no_work(launcher: dict[str, Any]) -> None:
    assert launcher["head_node_type"] in launcher["available_node_types"]
    head = launcher["available_node_types"][launcher["head_node_type"]]
    assert head["resources"] == {"CPU": 0, "GPU": 0}, "the head only runs the driver and the autoscaler"


def test_worker_counts_are_consistent(launcher: dict[str, Any]) -> None:
    workers = worker_types(launcher)
    for name, node in workers.items():
        assert 0 <= node["min_workers"] <= node["max_workers"], name
        assert node["max_workers"] <= launcher["max_workers"], name
    assert sum(node["min_workers"] for node in workers.values()) <= launcher["max_workers"]


def test_cluster_autoscales_from_zero(launcher: dict[str, Any]) -> None:
    assert launcher["upscaling_speed"] > 0
    assert launcher["idle_timeout_minutes"] > 0
    assert all(node["min_workers"] == 0 < node["max_workers"] for node in worker_types(launcher).values())


def test_gpu_worker_types_declare_their_gpus(launcher: dict[str, Any]) -> None:
    gpu_types = 0
    for name, node in worker_types(launcher).items():
        gpus, declared = accelerator_count(node["node_config"]), node["resources"].get("GPU", 0)
        if gpus == 0:
            assert declared == 0, f"{name} declares GPU={declared} on a machine without GPUs"
            continue
        gpu_types += 1
        assert declared >= 1, f"{name} is a GPU machine but declares GPU={declared}"
        assert gpus is None or declared == gpus, f"{name}: {gpus} accelerators, GPU={declared}"
        assert node["resources"]["CPU"] >= declared, f"{name}: fewer CPUs than GPUs"
    assert gpu_types >= 1


def test_setup_installs_raynas_from_the_mounted_checkout(launcher: dict[str, Any]) -> None:
    installs = [cmd for cmd in launcher["setup_commands"] if "pip install" in cmd and "raynas" in cmd]
    assert installs, "no setup command installs raynas"
    editable = [shlex.split(cmd)[-1] for cmd in installs if " -e " in cmd]
    for target in editable:
        assert target in launcher["file_mounts"], f"{target} is not a file_mounts target"
        source = (REPO / launcher["file_mounts"][target]).resolve()
        assert 'name = "raynas"' in (source / "pyproject.toml").read_text()


def test_start_commands_start_ray(launcher: dict[str, Any]) -> None:
    head, worker = " ".join(launcher["head_start_ray_commands"]), " ".join(launcher["worker_start_ray_commands"])
    assert "ray start --head" in head
    assert "--autoscaling-config=~/ray_bootstrap_config.yaml" in head
    assert "ray start --address=$RAY_HEAD_IP:6379" in worker


def test_launcher_dashboard_listens_on_loopback_only(launcher: dict[str, Any]) -> None:
    """The dashboard serves Ray's job-submission API (any command): reached via `ray dashboard`."""
    head = shlex.split(" ".join(launcher["head_start_ray_commands"]).replace(";", " "))
    hosts = [arg.split("=", 1)[1] for arg in head if arg.startswith("--dashboard-host=")]
    assert hosts == ["127.0.0.1"]


def test_launcher_image_matches_installed_ray(launcher: dict[str, Any]) -> None:
    match = IMAGE_TAG.match(launcher["docker"]["image"])
    assert match, launcher["docker"]["image"]
    assert (match["ray"], match["py"]) == (ray.__version__, "311")


GPU_1X = ["available_node_types", "gpu_1x_a10g"]
BROKEN = [
    # where a mistake is written into aws.yaml, the mistake, and the schema keyword that must reject it
    pytest.param(["max_worker"], 10, "additionalProperties", id="unknown-top-level-key"),
    pytest.param(["max_workers"], "ten", "type", id="max-workers-not-int"),
    pytest.param(["idle_timeout_minutes"], -1, "minimum", id="negative-idle-timeout"),
    pytest.param([*GPU_1X, "resources", "GPU"], 0.5, "type", id="fractional-gpu"),
    pytest.param([*GPU_1X, "min_worker"], 1, "additionalProperties", id="unknown-node-type-key"),
    pytest.param(["setup_commands"], "pip install -e ~/raynas", "type", id="setup-commands-not-a-list"),
]


@pytest.mark.parametrize(("path", "value", "keyword"), BROKEN)
def test_schema_rejects_broken_config(path: list[str], value: Any, keyword: str, ray_schema: dict[str, Any]) -> None:
    config = load_yaml(CLUSTER / "aws.yaml")
    parent = config
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    # An unknown key is reported on the object that holds it, any other error on the value itself.
    where = path[:-1] if keyword == "additionalProperties" else path
    assert [(list(e.absolute_path), e.validator) for e in schema_errors(config, ray_schema)] == [(where, keyword)]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(config, ray_schema)


# ---------------------------------------------------------------- KubeRay manifests


@pytest.fixture(scope="module")
def raycluster() -> dict[str, Any]:
    return load_yaml(CLUSTER / "kuberay" / "raycluster.yaml")


@pytest.fixture(scope="module")
def rayjob() -> dict[str, Any]:
    return load_yaml(CLUSTER / "kuberay" / "rayjob.yaml")


@pytest.fixture(params=["RayCluster", "RayJob"])
def cluster_spec(request: pytest.FixtureRequest, raycluster: dict[str, Any], rayjob: dict[str, Any]) -> dict[str, Any]:
    return raycluster["spec"] if request.param == "RayCluster" else rayjob["spec"]["rayClusterSpec"]


def pod_specs(spec: dict[str, Any]) -> list[dict[str, Any]]:
    groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
    return [group["template"]["spec"] for group in groups]


def expand_env(text: str, container: dict[str, Any]) -> str:
    for var in container.get("env", []):
        text = text.replace("${%s}" % var["name"], var["value"]).replace("$" + var["name"], var["value"])
    return text


def test_an_exposed_dashboard_is_fenced_to_the_namespace(cluster_spec: dict[str, Any]) -> None:
    """A head listening beyond loopback ships with a NetworkPolicy admitting only its namespace."""
    host = cluster_spec["headGroupSpec"]["rayStartParams"].get("dashboard-host", "127.0.0.1")
    if host in ("127.0.0.1", "localhost"):
        return
    policy = load_yaml(CLUSTER / "kuberay" / "networkpolicy.yaml")
    assert (policy["apiVersion"], policy["kind"]) == ("networking.k8s.io/v1", "NetworkPolicy")
    assert policy["spec"]["podSelector"]["matchLabels"] == {"ray.io/node-type": "head"}
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    sources = [source for rule in policy["spec"]["ingress"] for source in rule["from"]]
    assert sources == [{"podSelector": {}}], "only pods of the same namespace may reach the head"


def test_manifest_kinds(raycluster: dict[str, Any], rayjob: dict[str, Any]) -> None:
    assert (raycluster["apiVersion"], raycluster["kind"]) == ("ray.io/v1", "RayCluster")
    assert (rayjob["apiVersion"], rayjob["kind"]) == ("ray.io/v1", "RayJob")


def test_rayjob_creates_the_same_cluster_as_raycluster(raycluster: dict[str, Any], rayjob: dict[str, Any]) -> None:
    assert rayjob["spec"]["rayClusterSpec"] == raycluster["spec"]


def test_in_tree_autoscaling_is_on(cluster_spec: dict[str, Any]) -> None:
    assert cluster_spec["enableInTreeAutoscaling"] is True


def test_worker_groups_scale_within_bounds(cluster_spec: dict[str, Any]) -> None:
    assert cluster_spec["workerGroupSpecs"]
    for group in cluster_spec["workerGroupSpecs"]:
        assert 0 <= group["minReplicas"] <= group.get("replicas", 0) <= group["maxReplicas"], group["groupName"]
        assert group["maxReplicas"] >= 1, group["groupName"]


def test_gpu_worker_group_requests_gpus(cluster_spec: dict[str, Any]) -> None:
    gpu_groups = 0
    for group in cluster_spec["workerGroupSpecs"]:
        resources = group["template"]["spec"]["containers"][0]["resources"]
        if GPU in resources.get("limits", {}):
            gpu_groups += 1
            assert int(resources["limits"][GPU]) >= 1
            assert resources.get("requests", {}).get(GPU, resources["limits"][GPU]) == resources["limits"][GPU]
    assert gpu_groups >= 1


def test_ray_start_params_are_strings(cluster_spec: dict[str, Any]) -> None:
    # The CRD types rayStartParams as map[string]string: `num-cpus: 0` is rejected by the API server.
    groups = [cluster_spec["headGroupSpec"], *cluster_spec["workerGroupSpecs"]]
    for group in groups:
        assert all(isinstance(v, str) for v in group["rayStartParams"].values()), group["rayStartParams"]


def test_images_match_ray_version(cluster_spec: dict[str, Any]) -> None:
    for pod in pod_specs(cluster_spec):
        match = IMAGE_TAG.match(pod["containers"][0]["image"])
        assert match, pod["containers"][0]["image"]
        assert match["ray"] == cluster_spec["rayVersion"] == ray.__version__


def test_every_ray_container_installs_raynas(cluster_spec: dict[str, Any]) -> None:
    for pod in pod_specs(cluster_spec):
        container = pod["containers"][0]
        command = expand_env(" ".join(container.get("command", []) + container.get("args", [])), container)
        assert "pip install" in command and "raynas" in command, container["name"]


def test_volume_mounts_name_declared_volumes(cluster_spec: dict[str, Any]) -> None:
    for pod in pod_specs(cluster_spec):
        declared = {v["name"] for v in pod.get("volumes", [])}
        for container in pod["containers"]:
            assert {m["name"] for m in container.get("volumeMounts", [])} <= declared, container["name"]


def entrypoint_options(rayjob: dict[str, Any]) -> dict[str, str]:
    """`raynas run --a x --b y` -> {"--a": "x", "--b": "y"}."""
    argv = shlex.split(rayjob["spec"]["entrypoint"])
    assert argv[:2] == ["raynas", "run"]
    return dict(zip(argv[2::2], argv[3::2], strict=True))


def test_rayjob_entrypoint_runs_a_search(rayjob: dict[str, Any]) -> None:
    options = entrypoint_options(rayjob)
    assert options["--address"] == "auto"
    assert (REPO / "search_spaces" / f"{options['--space']}.yaml").is_file(), options["--space"]
    assert rayjob["spec"]["shutdownAfterJobFinishes"] is True
    assert "rayClusterSpec" in rayjob["spec"]


def test_rayjob_writes_and_reads_through_shared_volumes(rayjob: dict[str, Any]) -> None:
    # The cluster is deleted after the job, so --out must be an object store URI or on a volume every
    # pod mounts writable, and the dataset on a volume every pod mounts.
    options = entrypoint_options(rayjob)
    out, data_root = options["--out"], options["--data"].removeprefix("imagefolder:")
    for pod in pod_specs(rayjob["spec"]["rayClusterSpec"]):
        mounts = pod["containers"][0]["volumeMounts"]
        writable = [m["mountPath"] for m in mounts if not m.get("readOnly", False)]
        in_object_store = out.startswith(("s3://", "gs://"))
        assert in_object_store or any(out.startswith(path.rstrip("/") + "/") for path in writable), (out, writable)
        assert any(data_root.startswith(m["mountPath"].rstrip("/") + "/") for m in mounts), (data_root, mounts)
