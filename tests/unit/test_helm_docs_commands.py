"""The commands the Kubernetes docs give a site admin, read as text (no cluster here).

A first install follows them word for word, so each must work as written: every kubectl
command that acts on a namespaced object names the namespace (the release's is not the
kubeconfig's default); `helm test` runs only once the hub is Ready; the database restore
pod is a valid Pod that mounts the claim the chart makes, as the hub's uid. The Check-in
client's fields are listed once (docs/admin/checkin.md), and the other pages link there.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
HELM_MD = ROOT / "docs" / "admin" / "helm.md"
CHECKIN_MD = ROOT / "docs" / "admin" / "checkin.md"
PAGES = (
    HELM_MD,
    ROOT / "README.md",
    ROOT / "helm" / "egi-hub" / "README.md",
    ROOT / "docs" / "admin" / "binder.md",
    CHECKIN_MD,
)
#: kubectl subcommands on cluster-wide objects (or the local client): no namespace.
CLUSTER_WIDE = re.compile(r"^kubectl (create|delete|get) (namespace|ingressclass)\b")
#: A kubectl command named in prose, not run: `kubectl create secret docker-registry`.
MENTION = re.compile(r"^kubectl create secret (docker-registry|generic|tls)$")
CHECKIN_ANCHOR = "checkin.md#registering-the-service-in-check-in"


def shell_blocks(text: str) -> list[str]:
    """The commands of the shell blocks (``` or ```sh), continuation lines joined."""
    blocks: list[str] = []
    lang, lines = None, []
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("```"):
            if lang is None:
                lang, lines = line[3:], []
            else:
                if lang in ("", "sh", "bash"):
                    blocks.append("\n".join(lines))
                lang = None
        elif lang is not None:
            lines.append(line)
    return [
        command.strip()
        for block in blocks
        for command in block.replace("\\\n", " ").splitlines()
        if command.strip() and not command.strip().startswith("#")
    ]


def inline_code(text: str) -> list[str]:
    """Inline code spans, a span broken over lines joined again."""
    without_blocks = re.sub(r"```.*?```", "", text, flags=re.DOTALL)
    return [" ".join(span.split()) for span in re.findall(r"`([^`]+)`", without_blocks)]


def kubectl_commands(page: Path) -> list[str]:
    """Each kubectl invocation (with options or an object's name: a mention such as
    `kubectl cp` or `kubectl create secret docker-registry` is not one),
    split at pipes and `&&`, from code blocks and inline code."""
    text = page.read_text()
    found = []
    for piece in shell_blocks(text) + inline_code(text):
        for part in re.split(r"\|\||&&|\||;", piece):
            part = part.strip()
            if MENTION.match(part) or not part.startswith("kubectl "):
                continue
            if re.search(r"\s-", part) or len(part.split()) > 3:
                found.append(part)
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_kubectl_command_names_its_namespace(page: Path) -> None:
    for command in kubectl_commands(page):
        if CLUSTER_WIDE.match(command):
            continue
        assert re.search(r"\s(--namespace|-n)[\s=]\S", command), f"{page.name}: {command}"


def test_the_pages_have_kubectl_commands_to_check() -> None:
    found = kubectl_commands(HELM_MD)
    assert len(found) >= 15, found  # the parser sees the page's commands
    assert any(c.startswith("kubectl --namespace notebooks scale") for c in found)


@pytest.mark.parametrize("page", PAGES[:3], ids=lambda p: p.relative_to(ROOT).as_posix())
def test_helm_test_waits_for_a_ready_hub(page: Path) -> None:
    commands = shell_blocks(page.read_text())
    installs = [c for c in commands if c.startswith("helm install")]
    assert installs, f"{page.name}: no helm install"
    for install in installs:
        assert "--wait" in install.split(), f"{page.name}: {install}"
    for i, command in enumerate(commands):
        if command.startswith("helm test"):
            before = commands[:i]
            assert any(c.startswith("helm install") and "--wait" in c for c in before) or any(
                "rollout status" in c for c in before
            ), f"{page.name}: helm test before the hub is Ready"


def restore_pod() -> tuple[str, dict]:
    """The restore recipe's `kubectl run` and the Pod it makes (its --overrides)."""
    (run,) = [c for c in shell_blocks(HELM_MD.read_text()) if " run hub-db-restore " in c]
    overrides = re.search(r"--overrides='(.*)'$", run)
    assert overrides, run
    return run, json.loads(overrides[1])


def test_the_restore_pod_is_valid_and_mounts_the_hubs_claim() -> None:
    run, pod = restore_pod()
    image = re.search(r"--image=(\S+)", run)[1]
    assert re.fullmatch(r"[a-z]+:\d+\.\d+(\.\d+)?", image), "a pinned image"
    manifest = {"kind": "Pod", "metadata": {"name": "hub-db-restore"}, **pod}
    kubernetes_validate.validate(manifest, "1.29.0", strict=True)
    spec = pod["spec"]
    (container,) = spec["containers"]
    assert container["image"] == image
    (volume,) = spec["volumes"]
    release, claim = "notebooks", volume["persistentVolumeClaim"]["claimName"]
    assert claim == f"{release}-egi-hub-hub-db"  # templates/hub/pvc.yaml: <hub>-db
    assert {"name": volume["name"], "mountPath": "/srv/jupyterhub"} in container["volumeMounts"]
    values = yaml.safe_load((ROOT / "helm" / "egi-hub" / "values.yaml").read_text())
    hub = values["hub"]["podSecurityContext"]
    assert spec["securityContext"]["runAsUser"] == hub["runAsUser"]
    assert spec["securityContext"]["fsGroup"] == hub["fsGroup"]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert "hub-db-restore:/srv/jupyterhub/jupyterhub.sqlite" in HELM_MD.read_text()


def test_the_check_in_fields_are_listed_once_and_linked() -> None:
    rows = ("| redirect URI |", "| scopes |", "| PKCE |")
    assert all(row in CHECKIN_MD.read_text() for row in rows)
    for page in PAGES[:3]:
        text = page.read_text()
        assert CHECKIN_ANCHOR in text.replace("\n", ""), f"{page.name}: no link to the list"
        assert not any(row in text for row in rows), f"{page.name}: a second list"
        assert "offline_access" not in text, f"{page.name}: scopes listed apart"


def test_no_page_claims_notebook_containers_have_a_read_only_root() -> None:
    text = " ".join(HELM_MD.read_text().split())
    assert "Every container the chart renders has" in text
    assert "Every container has" not in text
