"""The real stack: Kafka and Weaviate installed, started (or reused), answering, and closed to
anonymous callers where Weaviate listens beyond loopback."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import grpc
import httpx
import pytest

from ragstream_cli.stack import (
    ensure_kafka,
    ensure_weaviate,
    kafka_bootstrap,
    kafka_ready,
    status,
    weaviate_api_key,
    weaviate_ports,
    weaviate_ready,
    weaviate_url,
)
from ragstream_cli.stack.weaviate import WEAVIATE_USER, weaviate_headers


@pytest.mark.stack
def test_kafka_and_weaviate_are_ensured_and_reused() -> None:
    """ensure_* brings both servers up; a second call reuses them within a second."""
    kafka_first = ensure_kafka()
    weaviate_first = ensure_weaviate()
    assert kafka_first.status.running
    assert weaviate_first.status.running

    kafka_again = ensure_kafka()
    weaviate_again = ensure_weaviate()
    assert kafka_again.action == "reused"
    assert weaviate_again.action == "reused"
    assert kafka_again.seconds < 1.0
    assert weaviate_again.seconds < 1.0

    assert kafka_ready(kafka_bootstrap())
    assert weaviate_ready(weaviate_url())
    current = status()
    assert current["kafka"].running
    assert current["weaviate"].running
    # Deliberately no stop: the stack is shared with the rest of the test session and other users.


def _listening_ports(pid: int) -> set[int]:
    """The TCP ports process ``pid`` listens on, from its socket inodes and /proc/net."""
    fd_dir = Path(f"/proc/{pid}/fd")
    inodes = set()
    for fd in fd_dir.iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and inode in inodes:  # 0A: LISTEN
                ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports


@pytest.mark.stack
class TestWeaviateBeyondLoopback:
    """Weaviate binds gRPC and its cluster API to every interface: each asks for the key."""

    def test_rest_asks_for_the_key(self) -> None:
        ensure_weaviate()
        meta = f"{weaviate_url()}/v1/meta"
        assert httpx.get(meta, timeout=10.0).status_code == 401
        assert (
            httpx.get(meta, headers=weaviate_headers("not-the-key"), timeout=10.0).status_code
            == 401
        )
        assert httpx.get(
            meta, headers=weaviate_headers(weaviate_api_key()), timeout=10.0
        ).is_success

    def test_grpc_asks_for_the_key(self) -> None:
        ensure_weaviate()
        target = f"127.0.0.1:{weaviate_ports().grpc}"
        # A call of Weaviate's public gRPC API with an empty request: auth is checked first.
        with grpc.insecure_channel(target) as channel:
            tenants_get = channel.unary_unary("/weaviate.v1.Weaviate/TenantsGet")
            with pytest.raises(grpc.RpcError) as anonymous:
                tenants_get(b"", timeout=10.0)
            with pytest.raises(grpc.RpcError) as keyed:
                tenants_get(b"", metadata=[("authorization", f"Bearer {weaviate_api_key()}")])
        assert "unauthorized" in (anonymous.value.details() or "")
        # Past the key, the empty request fails for what it lacks, a collection.
        assert "unauthorized" not in (keyed.value.details() or "")
        assert "collection" in (keyed.value.details() or "")

    def test_cluster_api_asks_for_the_key(self) -> None:
        ensure_weaviate()
        nodes = f"http://127.0.0.1:{weaviate_ports().data}/nodes/"
        assert httpx.get(nodes, timeout=10.0).status_code == 401
        assert (
            httpx.get(nodes, auth=(WEAVIATE_USER, weaviate_api_key()), timeout=10.0).status_code
            != 401
        )

    def test_no_listener_beyond_its_six_ports(self) -> None:
        """The debug (pprof) listener, on every interface by default, is off."""
        pid = ensure_weaviate().status.pid
        if pid is None or not Path(f"/proc/{pid}/fd").is_dir():
            pytest.skip("Weaviate was not started by this checkout, or /proc is not readable")
        ports = weaviate_ports()
        expected = {ports.http, ports.grpc, ports.gossip, ports.data, ports.raft, ports.raft_rpc}
        assert _listening_ports(pid) == expected
