"""Pure parts of the stack: ports from env, paths, Kafka config rendering, Weaviate environment."""

from __future__ import annotations

import base64
import http.server
import threading
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from ragstream_cli.stack import config, paths
from ragstream_cli.stack.config import KafkaPorts, WeaviatePorts, kafka_ports, weaviate_ports
from ragstream_cli.stack.errors import StackError
from ragstream_cli.stack.kafka import (
    new_cluster_id,
    render_log4j2,
    render_pom,
    render_server_properties,
)
from ragstream_cli.stack.weaviate import (
    WEAVIATE_USER,
    check_weaviate_key,
    weaviate_api_key,
    weaviate_env,
)


def _props(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return {key: value for key, value in pairs}


def test_default_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without env overrides the documented default ports are used."""
    for var in (
        "RAGSTREAM_KAFKA_PORT",
        "RAGSTREAM_KAFKA_CONTROLLER_PORT",
        "RAGSTREAM_WEAVIATE_PORT",
    ):
        monkeypatch.delenv(var, raising=False)
    assert kafka_ports() == KafkaPorts(broker=9092, controller=9093)
    assert weaviate_ports().http == 8080
    assert weaviate_ports().grpc == 50051


def test_ports_overridable_by_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """RAGSTREAM_*_PORT variables move a component's ports."""
    monkeypatch.setenv("RAGSTREAM_KAFKA_PORT", "19092")
    monkeypatch.setenv("RAGSTREAM_WEAVIATE_GRPC_PORT", "15051")
    assert kafka_ports().broker == 19092
    assert weaviate_ports().grpc == 15051


@pytest.mark.parametrize("bad", ["kafka", "0", "70000"])
def test_invalid_port_env_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    """A port variable that is not a valid port fails with a message naming the variable."""
    monkeypatch.setenv("RAGSTREAM_KAFKA_PORT", bad)
    with pytest.raises(StackError, match="RAGSTREAM_KAFKA_PORT"):
        config.kafka_ports()


def test_stack_and_cache_dirs_follow_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """RAGSTREAM_STACK_DIR and RAGSTREAM_HOME relocate state and installs respectively."""
    monkeypatch.setenv("RAGSTREAM_STACK_DIR", str(tmp_path / "st"))
    monkeypatch.setenv("RAGSTREAM_HOME", str(tmp_path / "home"))
    assert paths.component_dir("kafka") == tmp_path / "st" / "kafka"
    assert (tmp_path / "st" / "kafka").is_dir()
    assert paths.install_dir("kafka", "4.1.1") == tmp_path / "home" / "kafka-4.1.1"


def test_default_stack_dir_is_repo_dot_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    """By default state lives in <repo>/.stack, the repo being the directory holding uv.lock."""
    monkeypatch.delenv("RAGSTREAM_STACK_DIR", raising=False)
    root = paths.repo_root()
    assert (root / "uv.lock").is_file()
    assert paths.stack_dir() == root / ".stack"


def test_find_repo_root_walks_up(tmp_path: Path) -> None:
    """find_repo_root finds uv.lock in an ancestor, and returns None when there is none."""
    (tmp_path / "uv.lock").write_text("")
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    assert paths.find_repo_root(deep) == tmp_path
    assert paths.find_repo_root(Path("/")) is None


def test_server_properties_single_node_kraft(tmp_path: Path) -> None:
    """server.properties describes a one-node broker+controller on loopback with RF 1 internals."""
    props = _props(render_server_properties(tmp_path / "data", KafkaPorts(9092, 9093)))
    assert props["process.roles"] == "broker,controller"
    assert props["node.id"] == "1"
    assert props["controller.quorum.bootstrap.servers"] == "127.0.0.1:9093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"
    assert props["controller.listener.names"] == "CONTROLLER"
    assert props["log.dirs"] == (tmp_path / "data").as_posix()
    assert props["auto.create.topics.enable"] == "false"
    assert props["num.partitions"] == "3"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    for key in (
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
        "share.coordinator.state.topic.replication.factor",
        "share.coordinator.state.topic.min.isr",
    ):
        assert props[key] == "1", key
    assert "controller.quorum.voters" not in props  # incompatible with format --standalone


def test_server_properties_follow_port_overrides(tmp_path: Path) -> None:
    """Non-default ports end up in listeners, advertised listeners and the quorum bootstrap."""
    props = _props(render_server_properties(tmp_path, KafkaPorts(19092, 19093)))
    assert "PLAINTEXT://127.0.0.1:19092" in props["advertised.listeners"]
    assert props["controller.quorum.bootstrap.servers"] == "127.0.0.1:19093"


def test_log4j2_config_is_valid_xml_logging_to_the_file(tmp_path: Path) -> None:
    """The log4j2 config parses as XML, logs to the given file, and escapes odd path characters."""
    log_file = tmp_path / 'we&ird "dir"' / "server.log"
    root = ET.fromstring(render_log4j2(log_file))
    rolling = root.find("./Appenders/RollingFile")
    assert rolling is not None
    assert rolling.get("fileName") == log_file.as_posix()
    assert root.find("./Loggers/Root").get("level") == "INFO"  # type: ignore[union-attr]


def test_pom_pins_kafka_and_the_slf4j_binding() -> None:
    """The POM asks for the pinned broker and log4j binding versions."""
    pom = ET.fromstring(render_pom())
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    deps = {
        (d.findtext("m:artifactId", namespaces=ns), d.findtext("m:version", namespaces=ns))
        for d in pom.findall("./m:dependencies/m:dependency", ns)
    }
    assert deps == {
        (f"kafka_{config.SCALA_VERSION}", config.KAFKA_VERSION),
        ("log4j-slf4j-impl", config.LOG4J_SLF4J_VERSION),
    }


def test_cluster_id_is_kafka_style_uuid() -> None:
    """Cluster ids are 22-char unpadded base64url of 16 bytes, never starting with '-'."""
    for _ in range(200):
        cid = new_cluster_id()
        assert len(cid) == 22
        assert not cid.startswith("-")
        assert len(base64.urlsafe_b64decode(cid + "==")) == 16
    assert new_cluster_id() != new_cluster_id()


def test_weaviate_env_is_single_node_offline(tmp_path: Path) -> None:
    """Weaviate's environment pins every port, the Raft node id, and turns outside calls off."""
    ports = WeaviatePorts(8080, 50051, 7100, 7101, 8300, 8301)
    env = weaviate_env(tmp_path / "data", ports, "the-key")
    assert env["PERSISTENCE_DATA_PATH"] == (tmp_path / "data").as_posix()
    assert env["CLUSTER_HOSTNAME"] == config.WEAVIATE_CLUSTER_HOSTNAME
    assert env["DEFAULT_VECTORIZER_MODULE"] == "none"
    assert env["DISABLE_TELEMETRY"] == "true"
    assert env["RAFT_BOOTSTRAP_EXPECT"] == "1"
    assert (env["GRPC_PORT"], env["CLUSTER_GOSSIP_BIND_PORT"], env["CLUSTER_DATA_BIND_PORT"]) == (
        "50051",
        "7100",
        "7101",
    )
    assert (env["RAFT_PORT"], env["RAFT_INTERNAL_RPC_PORT"]) == ("8300", "8301")


def test_weaviate_env_closes_what_listens_beyond_loopback(tmp_path: Path) -> None:
    """gRPC and the cluster API bind every interface: both ask for the key; no debug listener."""
    env = weaviate_env(tmp_path / "data", WeaviatePorts(8080, 50051, 7100, 7101, 8300, 8301), "k")
    assert env["AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED"] == "false"
    assert env["AUTHENTICATION_APIKEY_ENABLED"] == "true"
    assert env["AUTHENTICATION_APIKEY_ALLOWED_KEYS"] == "k"
    assert env["AUTHENTICATION_APIKEY_USERS"] == WEAVIATE_USER
    assert (env["CLUSTER_BASIC_AUTH_USERNAME"], env["CLUSTER_BASIC_AUTH_PASSWORD"]) == (
        WEAVIATE_USER,
        "k",
    )
    assert env["GO_PROFILING_DISABLE"] == "true"
    assert "GO_PROFILING_PORT" not in env


def test_weaviate_api_key_is_made_once_per_stack_and_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The key is random, kept in the stack dir for its owner only, and the same on every read."""
    monkeypatch.setenv("RAGSTREAM_STACK_DIR", str(tmp_path / "one"))
    first = weaviate_api_key()
    key_file = tmp_path / "one" / "weaviate" / "api-key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert key_file.read_text().strip() == first
    assert weaviate_api_key() == first
    assert len(first) >= 32

    monkeypatch.setenv("RAGSTREAM_STACK_DIR", str(tmp_path / "two"))
    assert weaviate_api_key() != first


def test_a_node_that_refuses_the_key_is_a_clear_error(tmp_path: Path) -> None:
    """A running Weaviate started without this checkout's key is reported, not reused blindly."""

    class Refusing(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(401)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with pytest.raises(StackError, match="make down"):
            check_weaviate_key(f"http://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
        server.server_close()
