"""A rendered chart's pods, run on this machine: the hub and the proxy on loopback.

Why: the chart's hub must be proved to load the config it is given in a real JupyterHub
(tests/integration/test_helm_equivalence.py), with no cluster here. So each rendered
Service gets a free port on 127.0.0.1 (`loopback`), each container path a folder in a tmp
dir (`Pod`), each container's environment is made as the kubelet makes it
(`container_env`: values, Secret keys, the namespace field), and the processes run from
the rendered commands: configurable-http-proxy (`run_proxy`), the hub (`hub_pod`,
`run_hub`: its ``args``, which the image's tini runs). The hub's Kubernetes client is
pointed at `KubeApiTrap`, a listener that records every connection, so a test can prove
the API is never called.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from egi_hub.procs import installed_script
from egi_hub.proxy import proxy_command
from tests.kube import write_kubeconfig
from tests.stackrunner import Stack, free_port, launch_hub, wait_for

COMPONENT = "app.kubernetes.io/component"


def deployment(docs: list[dict[str, Any]], component: str) -> dict[str, Any]:
    """The pod spec of the rendered Deployment of ``component`` (``hub``, ``proxy``)."""
    (found,) = [
        d
        for d in docs
        if d["kind"] == "Deployment"
        and d["spec"]["template"]["metadata"]["labels"][COMPONENT] == component
    ]
    return found["spec"]["template"]["spec"]


class KubeApiTrap:
    """Where the hub's Kubernetes client is pointed: a listener that records every
    connection (and its first bytes) and answers none."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.connections: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(1)
                try:
                    first = conn.recv(200)
                except OSError:
                    first = b""
                self.connections.append(first or b"(connected, sent nothing)")

    def kubeconfig(self, path: Path, namespace: str) -> None:
        write_kubeconfig(path, f"http://127.0.0.1:{self.port}", namespace)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


@dataclass
class Loopback:
    """The chart's Services on 127.0.0.1: each Service address -> a free local port, and
    the port each container port behind a Service listens on here."""

    namespace: str
    addresses: dict[str, str]  # "host:port" (any of the Service's DNS names) -> "127.0.0.1:p"
    ports: dict[tuple[str, int], int]  # (component, container port) -> p

    def url(self, value: str) -> str:
        parsed = urlparse(value)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            return value
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        local = self.addresses.get(f"{parsed.hostname}:{port}")
        return parsed._replace(netloc=local).geturl() if local else value


def loopback(
    docs: list[dict[str, Any]], namespace: str, preset: dict[tuple[str, int], int]
) -> Loopback:
    """The Services of ``docs`` (rendered into ``namespace``) on loopback; ``preset``:
    ports already chosen, by (component, container port)."""
    addresses: dict[str, str] = {}
    ports = dict(preset)
    for service in (d for d in docs if d["kind"] == "Service"):
        component = service["spec"]["selector"][COMPONENT]
        container = deployment(docs, component)["containers"][0]
        named = {p["name"]: p["containerPort"] for p in container["ports"]}
        name = service["metadata"]["name"]
        for port in service["spec"]["ports"]:
            target = port["targetPort"]
            local = ports.setdefault((component, named.get(target, target)), free_port())
            for host in (name, f"{name}.{namespace}", f"{name}.{namespace}.svc"):
                addresses[f"{host}:{port['port']}"] = f"127.0.0.1:{local}"
    return Loopback(namespace, addresses, ports)


def container_env(
    container: dict[str, Any], secrets_by_name: dict[str, dict[str, str]], namespace: str
) -> dict[str, str]:
    """A container's environment as the kubelet makes it (values, Secret keys, the
    namespace field); a required key missing from its Secret fails the test."""
    env: dict[str, str] = {}
    for item in container.get("env", []):
        name, source = item["name"], item.get("valueFrom")
        if source is None:
            env[name] = item.get("value", "")
        elif "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            data = secrets_by_name.get(ref["name"], {})
            if ref["key"] in data:
                env[name] = data[ref["key"]]
            else:
                assert ref.get("optional"), f"{name}: Secret {ref['name']} has no {ref['key']}"
        else:
            assert source == {"fieldRef": {"fieldPath": "metadata.namespace"}}, name
            env[name] = namespace
    return env


@dataclass
class Pod:
    """A container of a rendered Deployment, run here: its paths under ``root``."""

    container: dict[str, Any]
    root: Path

    def path(self, value: str) -> str:
        """A container path (or sqlite URL) as a path under ``root``."""
        scheme = "sqlite:///" if value.startswith("sqlite:////") else ""
        path = value[len(scheme) :]
        for mount in self.container.get("volumeMounts", []):
            where = mount["mountPath"]
            if path == where or path.startswith(where + "/"):
                return scheme + str(self.root / mount["name"]) + path[len(where) :]
        return value

    def option(self, arg: str) -> str:
        """A command-line argument, ``--name=<container path>`` mapped under ``root``."""
        name, equals, value = arg.partition("=")
        return f"{name}={self.path(value)}" if equals else arg

    def volume(self, name: str) -> Path:
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        return folder


def run_proxy(
    docs: list[dict[str, Any]],
    net: Loopback,
    secrets_by_name: dict[str, dict[str, str]],
    log: Path,
) -> subprocess.Popen:
    """configurable-http-proxy with the rendered proxy Deployment's flags, on loopback;
    returns once its API listens."""
    container = deployment(docs, "proxy")["containers"][0]
    command = container["command"]
    assert command[0] == "configurable-http-proxy"
    flags = []
    for flag in command[1:]:
        key, _, value = flag.partition("=")
        if key in ("--ip", "--api-ip"):
            value = "127.0.0.1"
        elif key in ("--port", "--api-port"):
            value = str(net.ports[("proxy", int(value))])
        flags.append(f"{key}={net.url(value)}")
    env = {"PATH": os.environ["PATH"], **container_env(container, secrets_by_name, net.namespace)}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*proxy_command(), *flags],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    api = ("127.0.0.1", net.ports[("proxy", 8001)])

    def listening() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"the proxy exited:\n{log.read_text(errors='replace')}")
        with socket.socket() as s:
            return s.connect_ex(api) == 0

    wait_for(listening, 20, "the proxy's API to listen")
    return proc


@dataclass
class HubPod:
    """The hub's container, to run here: its command, environment and working folder."""

    command: list[str]
    env: dict[str, str]
    workdir: Path
    files: dict[str, str]  # the config Secret's files (site.json, values.json, ...)


def hub_pod(
    docs: list[dict[str, Any]],
    root: Path,
    net: Loopback,
    secrets_by_name: dict[str, dict[str, str]],
    trap: KubeApiTrap,
) -> HubPod:
    """The rendered hub container under ``root``: its Secret volume's files written, its
    environment resolved (``secrets_by_name``: every Secret it may name) with Service
    addresses and paths mapped, its Kubernetes client pointed at ``trap``."""
    spec = deployment(docs, "hub")
    pod = Pod(spec["containers"][0], root)
    for mount in pod.container["volumeMounts"]:
        pod.volume(mount["name"])
    # The Secret volume's files, as the kubelet writes them.
    (volume,) = [v for v in spec["volumes"] if "secret" in v]
    files = secrets_by_name[volume["secret"]["secretName"]]
    for name, text in files.items():
        (pod.volume(volume["name"]) / name).write_text(text)
    workdir = Path(pod.path(pod.container["workingDir"]))
    assert workdir.is_relative_to(root), workdir

    env = {
        name: net.url(pod.path(value))
        for name, value in container_env(pod.container, secrets_by_name, net.namespace).items()
    }
    trap.kubeconfig(root / "kubeconfig", net.namespace)
    (root / "home").mkdir()
    env |= {
        # What the image and the kubelet add: a PATH, a HOME, and the in-cluster API.
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "HOME": str(root / "home"),
        "LANG": "C.UTF-8",
        "KUBERNETES_SERVICE_HOST": "127.0.0.1",
        "KUBERNETES_SERVICE_PORT": str(trap.port),
        # No service-account token here, so KubeSpawner falls back to a kubeconfig.
        "KUBECONFIG": str(root / "kubeconfig"),
    }
    # args, not command: the image's ENTRYPOINT (tini) runs them; here they run as they are.
    assert "command" not in pod.container, "the hub's command would skip the image's tini"
    command = pod.container["args"]
    assert command[0] == "jupyterhub"
    (port,) = [p["containerPort"] for p in pod.container["ports"]]
    command = [
        installed_script("jupyterhub"),
        *(pod.option(arg) for arg in command[1:]),
        # The one setting added here: the hub listens on loopback, at its Service's
        # free port, not on every address at its container port.
        f"--JupyterHub.hub_bind_url=http://127.0.0.1:{net.ports[('hub', port)]}",
    ]
    return HubPod(command, env, workdir, files)


def show_config(pod: HubPod) -> dict[str, Any]:
    """The config a real JupyterHub loads from the pod's file and environment: it
    initialises as it would to serve, then prints its config instead of starting."""
    shown = subprocess.run(
        [*pod.command, "--show-config-json"],
        cwd=pod.workdir,
        env=pod.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)


def run_hub(pod: HubPod, url: str, api_token: str, log_path: Path) -> Stack:
    """The hub as the pod runs it (its environment alone); returns once it answers
    through the proxy at ``url``."""
    port = urlparse(url).port
    assert port is not None
    return launch_hub(
        pod.command, port, pod.workdir, api_token, log_path,
        cwd=pod.workdir, env=pod.env, inherit_env=False,
    )  # fmt: skip
