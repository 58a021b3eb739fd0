"""Offline validation of the deployment manifests: deploy/k8s (kustomize) and docker-compose.yml.

Nothing here needs a cluster, kustomize, Docker or the network. Kustomizations are rendered by a
small loader that follows ``resources``, ``components``, strategic-merge ``patches`` and
``namespace`` (the only kustomize features the manifests use; any other field fails the render).
Core kinds are validated with ``kubernetes_validate`` (strict: unknown fields are errors, as with
``kubectl apply``'s default server-side field validation); custom resources (KEDA, Strimzi) and
the Compose file with the JSON Schemas in ``<repo>/../shared/schemas``. On top of the schemas, the
tests pin what the schemas cannot know: that the autoscalers read the topics and consumer groups
the services use, within the registry's partition counts, that every container is locked down,
and that the generated KafkaTopics are exactly the topic registry.
"""

from __future__ import annotations

import copy
import importlib.util
import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
import yaml

from ragstream_common.messaging import consumer_options
from ragstream_common.settings import ServiceSettings
from ragstream_common.topics import all_topic_specs

REPO = Path(__file__).resolve().parents[1]
K8S = REPO / "deploy" / "k8s"
COMPOSE_FILE = REPO / "docker-compose.yml"
TOPICS_GENERATOR = REPO / "deploy" / "gen_kafka_topics.py"
# In CI the repository is cloned elsewhere with a copy of shared/ beside it.
SCHEMAS = REPO.parent / "shared" / "schemas"

# The oldest Kubernetes minor we support (deploy/README.md) and the newest the package knows.
K8S_VERSIONS = ("1.32.0", kubernetes_validate.latest_version())

CRD_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "keda-scaledobject-v1alpha1.json",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "keda-triggerauthentication-v1alpha1.json",
    ("kafka.strimzi.io/v1", "Kafka"): "strimzi-kafka-v1.json",
    ("kafka.strimzi.io/v1", "KafkaNodePool"): "strimzi-kafkanodepool-v1.json",
    ("kafka.strimzi.io/v1", "KafkaTopic"): "strimzi-kafkatopic-v1.json",
}

# What each consumer Deployment reads: topic -> consumer group (the services' own subscriptions).
CONSUMERS = {
    "ingestor": {"documents": "ingestor"},
    "embedder": {"chunks": "embedder"},
    "retriever": {"embeddings": "retriever-index", "queries": "retriever-search"},
    "generator": {"contexts": "generator"},
}
HTTP_PORTS = {
    "gateway": 8000,
    "ingestor": 8101,
    "embedder": 8102,
    "retriever": 8103,
    "generator": 8104,
}
SERVICES = tuple(HTTP_PORTS)
MODEL_SERVICES = ("embedder", "retriever")
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "DISABLE_TELEMETRY": "true",
}
REQUIRED_TRIGGER_METADATA = (
    "bootstrapServers",
    "consumerGroup",
    "topic",
    "lagThreshold",
    "activationLagThreshold",
    "offsetResetPolicy",
)
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job")
CLUSTER_SCOPED_KINDS = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
}


# --- the kustomize loader ----------------------------------------------------------------------


class KustomizeError(ValueError):
    """A kustomization uses something the loader does not support, or is inconsistent."""


_SUPPORTED_FIELDS = {"apiVersion", "kind", "resources", "components", "patches", "namespace"}
# Strategic-merge keys of the lists the manifests patch; every other list is replaced whole,
# as the API server's strategic merge patch does for lists without a patchMergeKey (envFrom).
_MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "imagePullSecrets": "name",
}


def strategic_merge(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Apply a strategic-merge ``patch`` to ``target`` in place and return it.

    Args:
        target: The object being patched.
        patch: Maps merge into maps; lists with a known merge key merge item by item; any other
            value (lists included) replaces; ``None`` deletes the key.
    """
    for key, value in patch.items():
        current = target.get(key)
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(current, dict):
            strategic_merge(current, value)
        elif (
            isinstance(value, list)
            and isinstance(current, list)
            and (merge_key := _list_merge_key(key, value))
        ):
            for item in value:
                match = next(
                    (old for old in current if old.get(merge_key) == item[merge_key]), None
                )
                if match is None:
                    current.append(copy.deepcopy(item))
                else:
                    strategic_merge(match, item)
        else:
            target[key] = copy.deepcopy(value)
    return target


def _list_merge_key(key: str, items: list[Any]) -> str | None:
    merge_key: str | None
    if key == "ports":  # containerPort in a container, port in a Service
        merge_key = "containerPort" if all("containerPort" in i for i in items) else "port"
    else:
        merge_key = _MERGE_KEYS.get(key)
    if merge_key is None or not all(isinstance(i, dict) and merge_key in i for i in items):
        return None
    return merge_key


def _resource_id(doc: dict[str, Any]) -> tuple[str, str, str]:
    return doc["kind"], doc["metadata"].get("namespace", ""), doc["metadata"]["name"]


def _load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    with path.open() as stream:
        return [doc for doc in yaml.safe_load_all(stream) if doc is not None]


def _read_kustomization(directory: Path) -> dict[str, Any]:
    path = directory / "kustomization.yaml"
    if not path.is_file():
        raise KustomizeError(f"{directory} has no kustomization.yaml")
    spec = yaml.safe_load(path.read_text()) or {}
    unsupported = set(spec) - _SUPPORTED_FIELDS
    if unsupported:
        raise KustomizeError(f"{path}: unsupported fields {sorted(unsupported)}")
    return spec


def render_kustomization(
    directory: Path, inherited: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """Render a Kustomization (or apply a Component to ``inherited``) the way kustomize would.

    Order as in kustomize: the resources, then each component in turn, then the patches, then the
    namespace.

    Args:
        directory: The directory holding ``kustomization.yaml``.
        inherited: For a Component, the resources accumulated by the kustomization using it.
    """
    spec = _read_kustomization(directory)
    kind = spec.get("kind", "Kustomization")
    if (kind == "Component") != (inherited is not None):
        role = "component" if inherited is not None else "resource"
        raise KustomizeError(f"{directory}: a {kind} used as a {role}")
    documents = list(inherited or [])
    for entry in spec.get("resources", []):
        path = (directory / entry).resolve()
        if path.is_dir():
            documents += render_kustomization(path)
        elif path.is_file():
            documents += _load_yaml_documents(path)
        else:
            raise KustomizeError(f"{directory}: resource {entry} does not exist")
    for entry in spec.get("components", []):
        documents = render_kustomization((directory / entry).resolve(), documents)
    for patch_entry in spec.get("patches", []):
        if set(patch_entry) != {"path"}:
            raise KustomizeError(f"{directory}: only file patches are supported, not {patch_entry}")
        for patch in _load_yaml_documents(directory / patch_entry["path"]):
            targets = [
                doc
                for doc in documents
                if doc["kind"] == patch["kind"]
                and doc["apiVersion"] == patch["apiVersion"]
                and doc["metadata"]["name"] == patch["metadata"]["name"]
            ]
            if len(targets) != 1:
                raise KustomizeError(f"{patch_entry['path']}: {len(targets)} targets")
            strategic_merge(targets[0], {k: v for k, v in patch.items() if k != "metadata"})
    if "namespace" in spec:
        for doc in documents:
            if doc["kind"] not in CLUSTER_SCOPED_KINDS:
                doc["metadata"]["namespace"] = spec["namespace"]
    ids = [_resource_id(doc) for doc in documents]
    duplicates = {i for i in ids if ids.count(i) > 1}
    if duplicates:
        raise KustomizeError(f"{directory}: duplicate resources {sorted(duplicates)}")
    return documents


def kustomization_dirs() -> list[Path]:
    """Every directory under deploy/k8s with a kustomization.yaml."""
    return sorted(path.parent for path in K8S.rglob("kustomization.yaml"))


def _id(directory: Path) -> str:
    return directory.relative_to(K8S).as_posix()


@cache
def _rendered(directory: Path) -> tuple[dict[str, Any], ...]:
    if _read_kustomization(directory).get("kind") == "Component":
        return tuple(render_kustomization(directory, rendered(K8S / "base")))
    return tuple(render_kustomization(directory))


def rendered(directory: Path) -> list[dict[str, Any]]:
    """A fresh copy of the rendered documents of ``directory`` (a Component on top of base)."""
    return copy.deepcopy(list(_rendered(directory)))


def of_kind(documents: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    """The documents of one kind, by name."""
    return {doc["metadata"]["name"]: doc for doc in documents if doc["kind"] == kind}


def pod_specs(documents: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """Each workload with its pod spec."""
    for doc in documents:
        if doc["kind"] in WORKLOAD_KINDS:
            yield doc, doc["spec"]["template"]["spec"]


def containers(
    documents: list[dict[str, Any]],
) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """Each container (init containers included) as (label, pod spec, container)."""
    for workload, pod in pod_specs(documents):
        for container in pod.get("initContainers", []) + pod["containers"]:
            yield (
                f"{workload['kind']}/{workload['metadata']['name']}/{container['name']}",
                pod,
                container,
            )


def common_env(documents: list[dict[str, Any]]) -> dict[str, str]:
    """The settings every service shares (the ragstream-env ConfigMap)."""
    return of_kind(documents, "ConfigMap")["ragstream-env"]["data"]


def only_container(workload: dict[str, Any]) -> dict[str, Any]:
    """The single container of a workload's pod template."""
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    return container


def container_env(container: dict[str, Any]) -> dict[str, str]:
    """A container's literal env values by name."""
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def memory_bytes(quantity: str) -> int:
    """A Kubernetes memory quantity in bytes (binary and decimal suffixes)."""
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9}
    for suffix, factor in sorted(units.items(), key=lambda item: -len(item[0])):
        if quantity.endswith(suffix):
            return int(float(quantity[: -len(suffix)]) * factor)
    return int(quantity)


def cpu_millis(quantity: str | int) -> int:
    """A Kubernetes CPU quantity in millicores."""
    text = str(quantity)
    return int(text[:-1]) if text.endswith("m") else int(float(text) * 1000)


def load_compose() -> dict[str, Any]:
    """docker-compose.yml, parsed (YAML merge keys resolved)."""
    return yaml.safe_load(COMPOSE_FILE.read_text())


OVERLAYS = {name: K8S / "overlays" / name for name in ("dev", "production")}
ALL_DIRS = kustomization_dirs()


# --- schemas -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def schemas() -> Path:
    """The shared JSON Schemas directory; fails, not skips, when it is not beside the repo."""
    if not SCHEMAS.is_dir():
        pytest.fail(
            f"JSON Schemas not found at {SCHEMAS}: the manifest tests need a copy of shared/ "
            "beside the repository (shared/schemas/*.json)",
            pytrace=False,
        )
    return SCHEMAS


def strict_schema(schema: Any) -> Any:
    """Return ``schema`` with unknown properties forbidden wherever it lists the known ones.

    The CRDs' OpenAPI schemas leave additionalProperties open, but the API server prunes or (with
    kubectl's default strict field validation) rejects unknown fields; forbidding them here
    catches a misspelt field offline. Objects marked x-kubernetes-preserve-unknown-fields stay open.
    """
    if isinstance(schema, list):
        return [strict_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {key: strict_schema(value) for key, value in schema.items()}
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        result["additionalProperties"] = False
    return result


@cache
def core_error(document_json: str, version: str) -> str | None:
    """kubernetes_validate's strict verdict on one core object (JSON, for caching), None if valid.

    Base's objects recur in every overlay; caching keeps the schema loading to once per object.
    """
    try:
        kubernetes_validate.validate(json.loads(document_json), version, strict=True)
    except kubernetes_validate.SchemaNotFoundError as error:
        return f"no schema: {error.message}"
    except kubernetes_validate.ValidationError as error:
        return f"{error.message} at {list(error.path)}"
    return None


@cache
def _crd_validator(schema_dir: Path, filename: str) -> jsonschema.Draft7Validator:
    schema = json.loads((schema_dir / filename).read_text())
    # The schemas describe spec and status; the Kubernetes envelope is always allowed.
    return jsonschema.Draft7Validator(strict_schema(schema))


def crd_errors(schema_dir: Path, doc: dict[str, Any]) -> list[str]:
    """Schema errors of one custom resource, as readable strings."""
    validator = _crd_validator(schema_dir, CRD_SCHEMAS[(doc["apiVersion"], doc["kind"])])
    return [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator.iter_errors(doc)
    ]


# --- the topic registry and the generator --------------------------------------------------------

REGISTRY = {spec.name: spec for spec in all_topic_specs()}


def load_topics_generator() -> ModuleType:
    """Import deploy/gen_kafka_topics.py (a script, not a package)."""
    spec = importlib.util.spec_from_file_location("gen_kafka_topics", TOPICS_GENERATOR)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- tests -------------------------------------------------------------------------------------


class TestStrategicMerge:
    """The loader's strategic-merge patching."""

    def test_merges_containers_and_env_by_name(self) -> None:
        """Containers and env vars merge by name, keeping what the patch does not mention."""
        target = {
            "containers": [
                {"name": "a", "image": "x", "env": [{"name": "K", "value": "1"}]},
                {"name": "b", "image": "y"},
            ]
        }
        patch = {"containers": [{"name": "a", "env": [{"name": "J", "value": "2"}]}]}
        merged = strategic_merge(target, patch)
        assert merged["containers"][0] == {
            "name": "a",
            "image": "x",
            "env": [{"name": "K", "value": "1"}, {"name": "J", "value": "2"}],
        }
        assert merged["containers"][1] == {"name": "b", "image": "y"}

    def test_replaces_lists_without_merge_key(self) -> None:
        """A list without a merge key (envFrom) is replaced whole, as the API server does."""
        target = {"envFrom": [{"configMapRef": {"name": "a"}}]}
        merged = strategic_merge(target, {"envFrom": [{"secretRef": {"name": "s"}}]})
        assert merged["envFrom"] == [{"secretRef": {"name": "s"}}]

    def test_null_deletes_a_field(self) -> None:
        """A null value in the patch deletes the field."""
        assert strategic_merge({"replicas": 2, "x": 1}, {"replicas": None}) == {"x": 1}


class TestRenderKustomization:
    """The loader that renders kustomizations without kustomize."""

    @pytest.mark.parametrize("directory", ALL_DIRS, ids=_id)
    def test_every_kustomization_renders(self, directory: Path) -> None:
        """Every kustomization and component renders to uniquely named documents."""
        documents = rendered(directory)
        assert documents
        assert all({"apiVersion", "kind", "metadata"} <= set(doc) for doc in documents)

    def test_rejects_unsupported_fields(self, tmp_path: Path) -> None:
        """A kustomize feature the loader does not implement fails the render, never ignored."""
        (tmp_path / "kustomization.yaml").write_text("resources: []\nimages: [{name: x}]\n")
        with pytest.raises(KustomizeError, match="images"):
            render_kustomization(tmp_path)

    def test_patch_must_hit_exactly_one_resource(self, tmp_path: Path) -> None:
        """A patch whose target does not exist fails, as it does with kustomize."""
        (tmp_path / "patch.yaml").write_text(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: gone}\nspec: {replicas: 1}\n"
        )
        (tmp_path / "kustomization.yaml").write_text("patches: [{path: patch.yaml}]\n")
        with pytest.raises(KustomizeError, match="0 targets"):
            render_kustomization(tmp_path)

    def test_namespace_applies_to_namespaced_resources_only(self) -> None:
        """The production namespace lands on namespaced objects, not on the Namespace itself."""
        documents = rendered(OVERLAYS["production"])
        for doc in documents:
            expected = None if doc["kind"] == "Namespace" else "ragstream"
            assert doc["metadata"].get("namespace") == expected, _resource_id(doc)


class TestCoreSchemas:
    """Core Kubernetes kinds against kubernetes_validate's schemas."""

    @pytest.mark.parametrize("version", K8S_VERSIONS)
    @pytest.mark.parametrize("directory", ALL_DIRS, ids=_id)
    def test_core_kinds_validate_strictly(self, directory: Path, version: str) -> None:
        """Every core object validates strictly for the oldest and newest supported Kubernetes."""
        errors = []
        for doc in rendered(directory):
            if (doc["apiVersion"], doc["kind"]) in CRD_SCHEMAS:
                continue
            error = core_error(json.dumps(doc, sort_keys=True), version)
            if error:
                errors.append(f"{_resource_id(doc)}: {error}")
        assert not errors, "\n".join(errors)


class TestCustomResourceSchemas:
    """KEDA and Strimzi resources against the shared CRD schemas."""

    @pytest.mark.parametrize("directory", ALL_DIRS, ids=_id)
    def test_custom_resources_validate(self, schemas: Path, directory: Path) -> None:
        """Every KEDA and Strimzi resource passes its CRD schema, unknown fields forbidden."""
        errors = []
        for doc in rendered(directory):
            if (doc["apiVersion"], doc["kind"]) in CRD_SCHEMAS:
                errors += [f"{_resource_id(doc)}: {e}" for e in crd_errors(schemas, doc)]
        assert not errors, "\n".join(errors)

    @pytest.mark.parametrize("directory", ALL_DIRS, ids=_id)
    def test_every_kind_has_a_schema(self, directory: Path) -> None:
        """No document escapes validation: each kind is either core or has a CRD schema."""
        for doc in rendered(directory):
            if (doc["apiVersion"], doc["kind"]) in CRD_SCHEMAS:
                continue
            error = core_error(json.dumps(doc, sort_keys=True), K8S_VERSIONS[0])
            assert not (error or "").startswith("no schema"), error

    def test_strict_schema_catches_a_misspelt_field(self, schemas: Path) -> None:
        """A misspelt ScaledObject field is an error, not silently ignored."""
        scaled = of_kind(rendered(K8S / "components" / "keda"), "ScaledObject")["ingestor"]
        scaled["spec"]["maxReplicas"] = scaled["spec"].pop("maxReplicaCount")
        assert any("maxReplicas" in error for error in crd_errors(schemas, scaled))


class TestScaledObjects:
    """KEDA's lag-based autoscaling of the consumer Deployments."""

    @property
    def documents(self) -> list[dict[str, Any]]:
        return rendered(OVERLAYS["production"])

    @property
    def scaled_objects(self) -> dict[str, dict[str, Any]]:
        return of_kind(self.documents, "ScaledObject")

    def _triggers(self) -> Iterator[tuple[str, dict[str, Any], dict[str, str]]]:
        for name, scaled in self.scaled_objects.items():
            for trigger in scaled["spec"]["triggers"]:
                yield name, scaled, trigger["metadata"]

    def test_one_per_consumer_deployment(self) -> None:
        """Each consumer Deployment has a ScaledObject targeting it, and the gateway has none."""
        assert set(self.scaled_objects) == set(CONSUMERS)
        deployments = of_kind(self.documents, "Deployment")
        for name, scaled in self.scaled_objects.items():
            assert scaled["spec"]["scaleTargetRef"]["name"] == name
            assert scaled["spec"]["scaleTargetRef"].get("kind", "Deployment") == "Deployment"
            assert name in deployments

    def test_triggers_read_the_services_topics_and_groups(self) -> None:
        """Each ScaledObject has one kafka trigger per (topic, group) its service consumes."""
        for name, scaled in self.scaled_objects.items():
            triggers = scaled["spec"]["triggers"]
            assert all(t["type"] == "kafka" for t in triggers)
            found = {t["metadata"]["topic"]: t["metadata"]["consumerGroup"] for t in triggers}
            assert found == CONSUMERS[name], name

    def test_groups_are_the_services_own(self) -> None:
        """Each consumer group a trigger names is a string literal in its service's source."""
        for name, groups in CONSUMERS.items():
            source = "\n".join(
                path.read_text() for path in (REPO / "services" / name / "src").rglob("*.py")
            )
            for group in groups.values():
                assert f'"{group}"' in source, (name, group)

    def test_topics_exist_in_the_registry(self) -> None:
        """Every trigger's topic is a topic of the registry."""
        for name, _, metadata in self._triggers():
            assert metadata["topic"] in REGISTRY, (name, metadata["topic"])

    def test_max_replicas_within_partitions(self) -> None:
        """maxReplicaCount never exceeds the partitions of any topic the Deployment scales on."""
        for name, scaled, metadata in self._triggers():
            partitions = REGISTRY[metadata["topic"]].partitions
            assert scaled["spec"]["maxReplicaCount"] <= partitions, (name, metadata["topic"])
            assert 0 <= scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"]

    def test_trigger_metadata_is_complete_and_all_strings(self) -> None:
        """Every trigger sets the required metadata, all values strings as the CRD demands."""
        for name, _, metadata in self._triggers():
            assert set(REQUIRED_TRIGGER_METADATA) <= set(metadata), name
            assert all(isinstance(value, str) for value in metadata.values()), metadata
            assert int(metadata["lagThreshold"]) > 0
            assert int(metadata["activationLagThreshold"]) >= 0

    def test_offset_reset_policy_matches_the_consumers(self) -> None:
        """KEDA assumes the consumers' offset reset policy, so it counts the lag they will read."""
        consumers = consumer_options(ServiceSettings(), "any-group")["auto_offset_reset"]
        for _, _, metadata in self._triggers():
            assert metadata["offsetResetPolicy"] == consumers

    def test_bootstrap_resolves_from_kedas_namespace(self) -> None:
        """bootstrapServers is the Strimzi bootstrap FQDN, resolvable from KEDA's own namespace."""
        kafka = next(iter(of_kind(self.documents, "Kafka").values()))
        namespace = kafka["metadata"]["namespace"]
        listener = next(lis for lis in kafka["spec"]["kafka"]["listeners"] if not lis["tls"])
        expected = f"{kafka['metadata']['name']}-kafka-bootstrap.{namespace}.svc:{listener['port']}"
        for _, _, metadata in self._triggers():
            assert metadata["bootstrapServers"] == expected

    def test_scale_to_zero_wakes_on_any_lag(self) -> None:
        """A Deployment that may reach zero wakes on any lag, or a small backlog never drains."""
        for name, scaled, metadata in self._triggers():
            if scaled["spec"]["minReplicaCount"] == 0:
                assert metadata["activationLagThreshold"] == "0", name

    def test_scale_to_zero_only_where_offsets_outlive_the_data(self) -> None:
        """Only consumers of time-retained topics reach zero, and their offsets outlive the data."""
        kafka = next(iter(of_kind(self.documents, "Kafka").values()))
        offsets_ms = int(kafka["spec"]["kafka"]["config"]["offsets.retention.minutes"]) * 60_000
        for name, scaled, metadata in self._triggers():
            if scaled["spec"]["minReplicaCount"] == 0:
                config = REGISTRY[metadata["topic"]].config
                assert config.get("cleanup.policy", "delete") == "delete", name
                assert int(config["retention.ms"]) < offsets_ms, name

    def test_autoscaled_deployments_leave_replicas_to_the_autoscaler(self) -> None:
        """Deployments under KEDA or an HPA set no replicas, which every apply would reset."""
        autoscaled = set(self.scaled_objects) | {
            hpa["spec"]["scaleTargetRef"]["name"]
            for hpa in of_kind(self.documents, "HorizontalPodAutoscaler").values()
        }
        deployments = of_kind(self.documents, "Deployment")
        assert autoscaled == set(SERVICES)
        for name in autoscaled:
            assert "replicas" not in deployments[name]["spec"], name

    def test_interactive_path_never_scales_to_zero(self) -> None:
        """The retriever and the generator, on the query path, keep at least one replica."""
        for name in ("retriever", "generator"):
            assert self.scaled_objects[name]["spec"]["minReplicaCount"] >= 1


class TestWorkloads:
    """Probes, resources and security of every container in every overlay."""

    @pytest.mark.parametrize("overlay", OVERLAYS.values(), ids=OVERLAYS)
    def test_long_running_containers_have_probes(self, overlay: Path) -> None:
        """Every long-running container has liveness and readiness probes on a declared port."""
        for label, _, container in containers(rendered(overlay)):
            if label.startswith("Job/"):
                continue  # run to completion: nothing to probe
            ports = {p.get("name") for p in container.get("ports", [])} | {
                p["containerPort"] for p in container.get("ports", [])
            }
            for probe in ("livenessProbe", "readinessProbe"):
                assert probe in container, (label, probe)
                action = container[probe].get("httpGet") or container[probe].get("tcpSocket")
                assert action, (label, probe)
                assert action["port"] in ports, (label, probe)

    @pytest.mark.parametrize("overlay", OVERLAYS.values(), ids=OVERLAYS)
    def test_every_container_has_requests_and_limits(self, overlay: Path) -> None:
        """Every container requests and is limited in CPU and memory, requests within limits."""
        for label, _, container in containers(rendered(overlay)):
            resources = container.get("resources", {})
            for kind in ("cpu", "memory"):
                assert kind in resources.get("requests", {}), (label, "requests", kind)
                assert kind in resources.get("limits", {}), (label, "limits", kind)
            assert cpu_millis(resources["requests"]["cpu"]) <= cpu_millis(
                resources["limits"]["cpu"]
            )
            assert memory_bytes(resources["requests"]["memory"]) <= memory_bytes(
                resources["limits"]["memory"]
            )

    @pytest.mark.parametrize("overlay", OVERLAYS.values(), ids=OVERLAYS)
    def test_every_container_is_locked_down(self, overlay: Path) -> None:
        """Every container runs non-root, read-only, unprivileged, capability-free, seccomp on."""
        for label, pod, container in containers(rendered(overlay)):
            pod_context = pod.get("securityContext", {})
            context = container.get("securityContext", {})
            assert context.get("runAsNonRoot", pod_context.get("runAsNonRoot")) is True, label
            assert context.get("readOnlyRootFilesystem") is True, label
            assert context.get("allowPrivilegeEscalation") is False, label
            assert context.get("privileged", False) is False, label
            assert context.get("capabilities", {}).get("drop") == ["ALL"], label
            assert not context.get("capabilities", {}).get("add"), label
            seccomp = context.get("seccompProfile", pod_context.get("seccompProfile", {}))
            assert seccomp.get("type") == "RuntimeDefault", label
            assert pod.get("automountServiceAccountToken") is False, label

    @pytest.mark.parametrize("overlay", OVERLAYS.values(), ids=OVERLAYS)
    def test_read_only_containers_get_a_writable_tmp(self, overlay: Path) -> None:
        """Each container mounts an emptyDir at /tmp, its only scratch space on a read-only root."""
        for label, pod, container in containers(rendered(overlay)):
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            assert "/tmp" in mounts, label
            volume = next(v for v in pod["volumes"] if v["name"] == mounts["/tmp"])
            assert "emptyDir" in volume, label

    @pytest.mark.parametrize("overlay", OVERLAYS.values(), ids=OVERLAYS)
    def test_services_listen_where_probed_and_scraped(self, overlay: Path) -> None:
        """Each service binds 0.0.0.0 on its port, probed on /healthz and scraped on /metrics."""
        documents = rendered(overlay)
        assert common_env(documents)["RAGSTREAM_HTTP_HOST"] == "0.0.0.0"
        deployments = of_kind(documents, "Deployment")
        for name, port in HTTP_PORTS.items():
            template = deployments[name]["spec"]["template"]
            (container,) = template["spec"]["containers"]
            assert container["image"].startswith(f"ragstream/{name}:")
            assert container_env(container)["RAGSTREAM_HTTP_PORT"] == str(port)
            assert {"name": "http", "containerPort": port} in container["ports"]
            assert {"configMapRef": {"name": "ragstream-env"}} in container["envFrom"]
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                assert container[probe]["httpGet"] == {"path": "/healthz", "port": "http"}
            annotations = template["metadata"]["annotations"]
            assert annotations["prometheus.io/scrape"] == "true"
            assert annotations["prometheus.io/port"] == str(port)
            assert annotations["prometheus.io/path"] == "/metrics"

    @pytest.mark.parametrize("overlay", OVERLAYS.values(), ids=OVERLAYS)
    def test_offline_hygiene_env(self, overlay: Path) -> None:
        """The shared ConfigMap switches off every call home, and Weaviate's telemetry is off."""
        documents = rendered(overlay)
        assert OFFLINE_ENV.items() <= common_env(documents).items()
        weaviate = of_kind(documents, "StatefulSet")["weaviate"]["spec"]["template"]["spec"]
        assert container_env(weaviate["containers"][0])["DISABLE_TELEMETRY"] == "true"

    @pytest.mark.parametrize("overlay", OVERLAYS.values(), ids=OVERLAYS)
    def test_model_services_get_memory_for_the_model(self, overlay: Path) -> None:
        """The embedder and the retriever may use 1.5-2 GiB; the other services at most 512 MiB."""
        deployments = of_kind(rendered(overlay), "Deployment")
        for name in SERVICES:
            limit = deployments[name]["spec"]["template"]["spec"]["containers"][0]["resources"]
            memory = memory_bytes(limit["limits"]["memory"])
            if name in MODEL_SERVICES:
                assert 1536 * 2**20 <= memory <= 2 * 2**30, name
            else:
                assert memory <= 512 * 2**20, name

    @pytest.mark.parametrize("overlay", OVERLAYS.values(), ids=OVERLAYS)
    def test_model_threads_follow_the_cpu_limit(self, overlay: Path) -> None:
        """The model services size torch's thread pool from their own CPU limit."""
        deployments = of_kind(rendered(overlay), "Deployment")
        for name in MODEL_SERVICES:
            container = only_container(deployments[name])
            env = {e["name"]: e.get("valueFrom") for e in container["env"]}
            for variable in ("RAGSTREAM_MODEL_THREADS", "OMP_NUM_THREADS"):
                assert env[variable] == {
                    "resourceFieldRef": {"resource": "limits.cpu", "divisor": "1"}
                }, (name, variable)

    @pytest.mark.parametrize("overlay", OVERLAYS.values(), ids=OVERLAYS)
    def test_retriever_points_at_weaviates_service(self, overlay: Path) -> None:
        """The retriever's Weaviate host and ports are the weaviate Service's."""
        documents = rendered(overlay)
        retriever = of_kind(documents, "Deployment")["retriever"]["spec"]["template"]["spec"]
        env = container_env(retriever["containers"][0])
        service = of_kind(documents, "Service")[env["RAGSTREAM_WEAVIATE_HOST"]]
        ports = {p["name"]: p["port"] for p in service["spec"]["ports"]}
        assert env["RAGSTREAM_WEAVIATE_HTTP_PORT"] == str(ports["http"]) == "8080"
        assert env["RAGSTREAM_WEAVIATE_GRPC_PORT"] == str(ports["grpc"]) == "50051"

    @pytest.mark.parametrize("overlay", OVERLAYS.values(), ids=OVERLAYS)
    def test_services_select_pods_and_named_ports(self, overlay: Path) -> None:
        """Every Service selects a pod template and targets ports that template declares."""
        documents = rendered(overlay)
        templates = [doc["spec"]["template"] for doc in documents if doc["kind"] in WORKLOAD_KINDS]
        for name, service in of_kind(documents, "Service").items():
            selector = service["spec"]["selector"].items()
            matching = [t for t in templates if selector <= t["metadata"]["labels"].items()]
            assert matching, name
            declared = {
                port.get("name")
                for template in matching
                for container in template["spec"]["containers"]
                for port in container.get("ports", [])
            }
            for port in service["spec"]["ports"]:
                assert port["targetPort"] in declared, (name, port)

    def test_weaviate_keeps_its_data_and_identity(self) -> None:
        """Weaviate is a StatefulSet with a volume claim for its data path and the pinned image."""
        weaviate = of_kind(rendered(K8S / "base"), "StatefulSet")["weaviate"]
        (container,) = weaviate["spec"]["template"]["spec"]["containers"]
        assert container["image"] == "semitechnologies/weaviate:1.39.0"
        env = container_env(container)
        claim = weaviate["spec"]["volumeClaimTemplates"][0]["metadata"]["name"]
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        assert mounts[claim] == env["PERSISTENCE_DATA_PATH"]
        assert env["DEFAULT_VECTORIZER_MODULE"] == "none"
        assert env["RAFT_BOOTSTRAP_EXPECT"] == "1"


class TestRedis:
    """Redis, the embedder's shared embedding cache, on Kubernetes and in Compose."""

    @staticmethod
    def _options(args: list[str]) -> dict[str, str]:
        """``--name value`` pairs of a redis-server command line."""
        assert args[0] == "redis-server"
        pairs = args[1:]
        return {pairs[i].removeprefix("--"): pairs[i + 1] for i in range(0, len(pairs), 2)}

    @pytest.mark.parametrize("overlay", OVERLAYS.values(), ids=OVERLAYS)
    def test_services_find_redis(self, overlay: Path) -> None:
        """RAGSTREAM_REDIS_URL names the redis Service and its port."""
        documents = rendered(overlay)
        url = urlsplit(common_env(documents)["RAGSTREAM_REDIS_URL"])
        assert url.scheme == "redis"
        service = of_kind(documents, "Service")[url.hostname or ""]
        assert url.port in {p["port"] for p in service["spec"]["ports"]}

    def test_redis_is_a_bounded_cache_without_persistence(self) -> None:
        """No snapshots or AOF, an LRU cap below the memory limit, a writable emptyDir data dir."""
        redis = of_kind(rendered(K8S / "base"), "Deployment")["redis"]
        pod = redis["spec"]["template"]["spec"]
        container = only_container(redis)
        options = self._options(container["args"])
        assert (options["save"], options["appendonly"]) == ("", "no")
        assert options["maxmemory-policy"] == "allkeys-lru"
        maxmemory = int(options["maxmemory"].removesuffix("mb")) * 2**20
        assert maxmemory < memory_bytes(container["resources"]["limits"]["memory"])
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        data = next(v for v in pod["volumes"] if v["name"] == mounts[options["dir"]])
        assert "emptyDir" in data

    def test_compose_runs_the_same_redis(self) -> None:
        """Compose's Redis has Kubernetes' image and options, runs non-root and read-only."""
        compose = load_compose()["services"]
        container = only_container(of_kind(rendered(K8S / "base"), "Deployment")["redis"])
        redis = compose["redis"]
        assert redis["image"] == container["image"] == "redis:7"
        assert self._options(redis["command"]) == self._options(container["args"])
        assert redis["read_only"] is True
        assert not str(redis["user"]).startswith("0")
        assert self._options(redis["command"])["dir"] in redis["tmpfs"]
        url = urlsplit(compose["embedder"]["environment"]["RAGSTREAM_REDIS_URL"])
        assert (url.hostname, url.port) == ("redis", 6379)

    def test_only_the_embedder_reaches_redis(self) -> None:
        """The network policies let the embedder, and no one else, connect to Redis."""
        policies = of_kind(rendered(K8S / "components" / "network-policies"), "NetworkPolicy")
        (rule,) = policies["redis"]["spec"]["ingress"]
        assert rule["from"] == [{"podSelector": {"matchLabels": {"app": "embedder"}}}]
        egress = policies["embedder"]["spec"]["egress"]
        assert {"podSelector": {"matchLabels": {"app": "redis"}}} in egress[0]["to"]


class TestKafkaTopics:
    """The Strimzi KafkaTopics generated from the topic registry."""

    component = K8S / "components" / "strimzi"

    def test_committed_file_is_what_the_generator_renders(self) -> None:
        """kafka-topics.yaml is exactly what the generator renders now from the registry."""
        generator = load_topics_generator()
        committed = generator.OUTPUT.read_text()
        assert committed == generator.render(), (
            "deploy/k8s/components/strimzi/kafka-topics.yaml is stale: run "
            ".venv/bin/python deploy/gen_kafka_topics.py"
        )

    def test_one_topic_per_registry_entry(self) -> None:
        """Each registry topic, dead letters included, has a KafkaTopic with its settings."""
        topics = of_kind(rendered(self.component), "KafkaTopic")
        assert {t["spec"]["topicName"] for t in topics.values()} == set(REGISTRY)
        for topic in topics.values():
            spec = REGISTRY[topic["spec"]["topicName"]]
            assert topic["spec"]["partitions"] == spec.partitions, spec.name
            assert topic["spec"]["config"] == spec.config, spec.name

    def test_topics_fit_the_cluster(self) -> None:
        """Topics belong to the cluster, with replicas within the brokers and room for a loss."""
        documents = rendered(self.component)
        (kafka,) = of_kind(documents, "Kafka").values()
        (pool,) = of_kind(documents, "KafkaNodePool").values()
        brokers = pool["spec"]["replicas"] if "broker" in pool["spec"]["roles"] else 0
        min_isr = int(kafka["spec"]["kafka"]["config"]["min.insync.replicas"])
        for topic in of_kind(documents, "KafkaTopic").values():
            assert topic["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
            assert min_isr < topic["spec"]["replicas"] <= brokers


class TestKafkaCluster:
    """The Kafka cluster each overlay brings, and how the services find it."""

    def test_strimzi_cluster_is_kraft_with_a_quorum(self) -> None:
        """An odd number of combined KRaft nodes, and no automatic topic creation."""
        documents = rendered(K8S / "components" / "strimzi")
        (kafka,) = of_kind(documents, "Kafka").values()
        (pool,) = of_kind(documents, "KafkaNodePool").values()
        assert pool["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
        assert set(pool["spec"]["roles"]) == {"controller", "broker"}
        assert pool["spec"]["replicas"] % 2 == 1
        assert kafka["spec"]["kafka"]["config"]["auto.create.topics.enable"] is False

    @pytest.mark.parametrize("overlay", OVERLAYS.values(), ids=OVERLAYS)
    def test_services_find_kafka(self, overlay: Path) -> None:
        """The services' bootstrap address is the overlay's Kafka (Strimzi's or the dev one)."""
        documents = rendered(overlay)
        host, port = common_env(documents)["RAGSTREAM_KAFKA_BOOTSTRAP"].split(":")
        kafkas = of_kind(documents, "Kafka")
        if kafkas:  # Strimzi creates <cluster>-kafka-bootstrap for the plain listener
            (kafka,) = kafkas.values()
            assert host == f"{kafka['metadata']['name']}-kafka-bootstrap"
            assert int(port) in {lis["port"] for lis in kafka["spec"]["kafka"]["listeners"]}
        else:
            service = of_kind(documents, "Service")[host]
            assert int(port) in {p["port"] for p in service["spec"]["ports"]}

    def test_dev_kafka_advertises_its_service(self) -> None:
        """The dev broker advertises the bootstrap Service, and its image is the Compose file's."""
        documents = rendered(OVERLAYS["dev"])
        kafka = only_container(of_kind(documents, "StatefulSet")["kafka"])
        env = container_env(kafka)
        bootstrap = common_env(documents)["RAGSTREAM_KAFKA_BOOTSTRAP"]
        assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{bootstrap}"
        assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
        compose = load_compose()
        assert kafka["image"] == compose["services"]["kafka"]["image"] == "apache/kafka:4.1.1"


class TestOverlays:
    """What distinguishes dev from production."""

    def test_dev_runs_everything_once(self) -> None:
        """Dev runs one replica of every workload and no autoscaler."""
        documents = rendered(OVERLAYS["dev"])
        for doc in documents:
            if doc["kind"] in ("Deployment", "StatefulSet"):
                assert doc["spec"].get("replicas", 1) == 1, doc["metadata"]["name"]
        kinds = {doc["kind"] for doc in documents}
        assert not kinds & {"ScaledObject", "HorizontalPodAutoscaler", "Kafka"}

    def test_dev_requests_less_than_base(self) -> None:
        """Dev's containers request no more CPU or memory than base's, and less in total."""

        def requests(directory: Path) -> dict[str, tuple[int, int]]:
            return {
                label: (
                    cpu_millis(c["resources"]["requests"]["cpu"]),
                    memory_bytes(c["resources"]["requests"]["memory"]),
                )
                for label, _, c in containers(rendered(directory))
            }

        base, dev = requests(K8S / "base"), requests(OVERLAYS["dev"])
        for label, (cpu, memory) in base.items():
            assert dev[label][0] <= cpu, label
            assert dev[label][1] <= memory, label
        assert sum(c for c, _ in dev.values()) < sum(c for c, _ in base.values())

    def test_production_brings_strimzi_keda_and_the_router(self) -> None:
        """Production has Strimzi's cluster, a ScaledObject per consumer and the router config."""
        documents = rendered(OVERLAYS["production"])
        assert of_kind(documents, "Kafka")
        assert of_kind(documents, "KafkaNodePool")
        assert set(of_kind(documents, "ScaledObject")) == set(CONSUMERS)
        generator = of_kind(documents, "Deployment")["generator"]["spec"]["template"]["spec"]
        (container,) = generator["containers"]
        router = container_env(container)["RAGSTREAM_ROUTER_CONFIG"]
        mount = next(
            m for m in container["volumeMounts"] if router.startswith(m["mountPath"] + "/")
        )
        volume = next(v for v in generator["volumes"] if v["name"] == mount["name"])
        config_map = of_kind(documents, "ConfigMap")[volume["configMap"]["name"]]
        router_yaml = yaml.safe_load(config_map["data"][router.rsplit("/", 1)[1]])
        assert set(router_yaml) == {"model_list", "router_settings"}
        # The patch replaced envFrom whole: the shared settings must still be there.
        assert {"configMapRef": {"name": "ragstream-env"}} in container["envFrom"]

    def test_production_gateway_keeps_two_replicas(self) -> None:
        """The gateway runs at least two replicas, scaled on CPU, and a drain always leaves one."""
        documents = rendered(OVERLAYS["production"])
        hpa = of_kind(documents, "HorizontalPodAutoscaler")["gateway"]
        assert hpa["spec"]["scaleTargetRef"]["name"] == "gateway"
        assert hpa["spec"]["minReplicas"] >= 2
        assert of_kind(documents, "PodDisruptionBudget")["gateway"]["spec"]["minAvailable"] >= 1

    def test_production_has_a_disruption_budget_per_service(self) -> None:
        """Each service has a PodDisruptionBudget selecting its pods."""
        budgets = of_kind(rendered(OVERLAYS["production"]), "PodDisruptionBudget")
        for name in SERVICES:
            assert budgets[name]["spec"]["selector"]["matchLabels"] == {"app": name}

    def test_network_policies_are_opt_in(self) -> None:
        """NetworkPolicies are a component production does not enable by itself."""
        assert not of_kind(rendered(OVERLAYS["production"]), "NetworkPolicy")
        assert of_kind(rendered(K8S / "components" / "network-policies"), "NetworkPolicy")


class TestNetworkPolicies:
    """The opt-in network-policies component, on top of each overlay."""

    component = K8S / "components" / "network-policies"

    @pytest.mark.parametrize("overlay", OVERLAYS.values(), ids=OVERLAYS)
    def test_every_platform_pod_is_denied_by_default(self, overlay: Path) -> None:
        """The deny-all policy selects every pod the overlay runs."""
        policies = of_kind(rendered(self.component), "NetworkPolicy")
        (expression,) = policies["deny-all"]["spec"]["podSelector"]["matchExpressions"]
        assert (expression["key"], expression["operator"]) == ("app", "In")
        for workload, _ in pod_specs(rendered(overlay)):
            app = workload["spec"]["template"]["metadata"]["labels"]["app"]
            assert app in expression["values"], app

    def test_policies_select_pods_that_exist(self) -> None:
        """Every app a policy names is the app label of some pod in dev or production."""
        apps = {
            workload["spec"]["template"]["metadata"]["labels"]["app"]
            for overlay in OVERLAYS.values()
            for workload, _ in pod_specs(rendered(overlay))
        }

        def named(node: Any) -> Iterator[str]:
            if isinstance(node, dict):
                if "app" in node.get("matchLabels", {}):
                    yield node["matchLabels"]["app"]
                for expression in node.get("matchExpressions", []):
                    if expression["key"] == "app":
                        yield from expression["values"]
                for value in node.values():
                    yield from named(value)
            elif isinstance(node, list):
                for value in node:
                    yield from named(value)

        for name, policy in of_kind(rendered(self.component), "NetworkPolicy").items():
            assert set(named(policy["spec"])) <= apps, name


class TestDockerCompose:
    """docker-compose.yml, against the Compose Specification and the Kubernetes manifests."""

    @property
    def compose(self) -> dict[str, Any]:
        return load_compose()

    @property
    def services(self) -> dict[str, Any]:
        return self.compose["services"]

    def test_validates_against_the_compose_spec(self, schemas: Path) -> None:
        """The file passes the Compose Specification's JSON Schema."""
        schema = json.loads((schemas / "compose-spec.json").read_text())
        errors = [
            f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in jsonschema.Draft7Validator(schema).iter_errors(self.compose)
        ]
        assert not errors, "\n".join(errors)

    def test_services_build_from_their_dockerfiles(self) -> None:
        """Each service builds from services/<name>/Dockerfile with the repository as context."""
        for name in SERVICES:
            service = self.services[name]
            assert service["build"] == {"context": ".", "dockerfile": f"services/{name}/Dockerfile"}
            assert service["image"] == f"ragstream/{name}:latest"

    def test_long_running_services_have_healthchecks(self) -> None:
        """Every service except the one-shot topic job has a healthcheck."""
        for name, service in self.services.items():
            if service.get("restart") == "no":
                continue
            assert "healthcheck" in service, name

    def test_start_order_waits_for_health(self) -> None:
        """Services wait for a healthy Kafka and the topics; the retriever also for Weaviate."""
        assert self.services["create-topics"]["depends_on"] == {
            "kafka": {"condition": "service_healthy"}
        }
        for name in SERVICES:
            depends = self.services[name]["depends_on"]
            assert depends["kafka"] == {"condition": "service_healthy"}, name
            assert depends["create-topics"] == {"condition": "service_completed_successfully"}, name
        healthy = {"condition": "service_healthy"}
        assert self.services["retriever"]["depends_on"]["weaviate"] == healthy

    def test_only_the_gateway_is_published_and_on_loopback(self) -> None:
        """The gateway is published on 127.0.0.1:8000; nothing is published on all interfaces."""
        assert self.services["gateway"]["ports"] == ["127.0.0.1:8000:8000"]
        for name, service in self.services.items():
            for port in service.get("ports", []):
                assert str(port).startswith("127.0.0.1:"), (name, port)

    def test_same_ports_and_settings_as_kubernetes(self) -> None:
        """HTTP ports, shared settings and the Weaviate image are the Kubernetes manifests'."""
        base = rendered(K8S / "base")
        deployments = of_kind(base, "Deployment")
        # Everything but the broker's address, which differs between the two networks.
        shared = {(k, v) for k, v in common_env(base).items() if k != "RAGSTREAM_KAFKA_BOOTSTRAP"}
        for name in SERVICES:
            env = self.services[name]["environment"]
            k8s_env = container_env(only_container(deployments[name]))
            assert env["RAGSTREAM_HTTP_PORT"] == k8s_env["RAGSTREAM_HTTP_PORT"], name
            assert env["RAGSTREAM_HTTP_HOST"] == "0.0.0.0"
            assert OFFLINE_ENV.items() <= env.items(), name
            assert shared <= env.items(), name
        weaviate = only_container(of_kind(base, "StatefulSet")["weaviate"])
        assert self.services["weaviate"]["image"] == weaviate["image"]
        assert self.services["weaviate"]["environment"]["DISABLE_TELEMETRY"] == "true"

    def test_bootstrap_is_the_kafka_services_listener(self) -> None:
        """Services reach Kafka at the address the broker advertises on the compose network."""
        kafka_env = self.services["kafka"]["environment"]
        for name in SERVICES:
            bootstrap = self.services[name]["environment"]["RAGSTREAM_KAFKA_BOOTSTRAP"]
            assert f"PLAINTEXT://{bootstrap}" in kafka_env["KAFKA_ADVERTISED_LISTENERS"].split(",")
