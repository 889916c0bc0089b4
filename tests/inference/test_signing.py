"""Ed25519 bundle signatures with real keys: sign, verify, refuse what was altered or signed by others."""

from __future__ import annotations

import base64
import json
import stat
import zipfile

import pytest
from typer.testing import CliRunner

from osteolens.errors import BundleError, ConfigError
from osteolens.inference.bundle import add_onnx, load_bundle
from osteolens.inference.runtime import export_onnx
from osteolens.inference.signing import (
    canonical_manifest,
    fingerprint,
    generate_keypair,
    load_public_key,
    sign_bundle,
    verify_bundle,
)


@pytest.fixture
def keys(tmp_path):
    """Two real key pairs: ``(private, public)`` of the publisher and of someone else."""
    return generate_keypair(tmp_path / "mine"), generate_keypair(tmp_path / "other")


@pytest.mark.parametrize("name", ["bundle", "bundle.zip"])
def test_sign_then_verify_and_load(make_bundle, keys, name):
    (private, public), _ = keys
    path = make_bundle(folds=1, name=name)
    key_id = sign_bundle(path, private)
    assert key_id == fingerprint(load_public_key(public))
    assert verify_bundle(path, public) == key_id
    assert load_bundle(path, trusted_key=public).name == "bundle"


def test_signature_is_ed25519_over_the_canonical_manifest(make_bundle, keys):
    (private, public), _ = keys
    path = make_bundle(folds=1)
    sign_bundle(path, private)
    record = json.loads((path / "bundle.sig").read_text())
    manifest = json.loads((path / "bundle.json").read_text())
    message = b"osteolens-bundle-signature-v1\n" + json.dumps(
        manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert canonical_manifest(manifest) == message
    load_public_key(public).verify(base64.b64decode(record["signature"]), message)  # raises if invalid
    assert record["algorithm"] == "ed25519"
    # Re-indenting bundle.json keeps its content, hence the signature.
    (path / "bundle.json").write_text(json.dumps(manifest, indent=4))
    verify_bundle(path, public)


def test_one_changed_byte_of_bundle_json_is_refused(make_bundle, keys):
    (private, public), _ = keys
    path = make_bundle(folds=1)
    sign_bundle(path, private)
    data = bytearray((path / "bundle.json").read_bytes())
    data[data.index(b'"osteoporosis"') + 1] = ord("O")  # one byte: the positive class's name
    (path / "bundle.json").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="the bundle was altered after signing"):
        load_bundle(path, trusted_key=public)
    with pytest.raises(BundleError, match="altered"):
        verify_bundle(path, public)
    assert load_bundle(path).labels == ["normal", "Osteoporosis"]  # without a trusted key: as before


def test_one_changed_byte_of_weights_is_refused(make_bundle, keys):
    (private, public), _ = keys
    path = make_bundle(folds=1)
    sign_bundle(path, private)
    weights = bytearray((path / "fold0.safetensors").read_bytes())
    weights[-1] ^= 1
    (path / "fold0.safetensors").write_bytes(bytes(weights))
    with pytest.raises(BundleError, match="'fold0.safetensors' is corrupt"):
        load_bundle(path, trusted_key=public)


def test_a_bundle_signed_by_another_key_is_refused(make_bundle, keys):
    (private, public), (other_private, _) = keys
    path = make_bundle(folds=1)
    sign_bundle(path, other_private)
    with pytest.raises(BundleError, match="signed by another key"):
        load_bundle(path, trusted_key=public)
    # A signature made by another key but labelled with the trusted key's fingerprint fails the check itself.
    record = json.loads((path / "bundle.sig").read_text())
    record["key_fingerprint"] = fingerprint(load_public_key(public))
    (path / "bundle.sig").write_text(json.dumps(record))
    with pytest.raises(BundleError, match="altered after signing"):
        load_bundle(path, trusted_key=public)


def test_unsigned_bundle_needs_no_key_but_is_refused_with_one(make_bundle, keys):
    (_, public), _ = keys
    path = make_bundle(folds=1)
    assert len(load_bundle(path).models) == 1
    with pytest.raises(BundleError, match=r"not signed \(no bundle.sig\).*osteolens bundle sign"):
        load_bundle(path, trusted_key=public)


def test_changing_the_bundle_drops_its_signature(make_bundle, keys):
    (private, public), _ = keys
    path = make_bundle(folds=1, name="b.zip")
    sign_bundle(path, private)
    sign_bundle(path, private)  # re-signing replaces the member
    assert zipfile.ZipFile(path).namelist().count("bundle.sig") == 1
    add_onnx(path, export_onnx(load_bundle(path).models, (48, 48)))
    with pytest.raises(BundleError, match="not signed"):
        load_bundle(path, trusted_key=public)
    sign_bundle(path, private)
    assert load_bundle(path, trusted_key=public).onnx_model is not None


def test_keys(tmp_path, keys):
    (private, public), _ = keys
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    with pytest.raises(ConfigError, match="already exists"):
        generate_keypair(private.parent)
    with pytest.raises(ConfigError, match="is a private key"):
        load_public_key(private)
    (tmp_path / "junk.pub").write_text("not a key")
    with pytest.raises(ConfigError, match="not a PEM public key"):
        load_public_key(tmp_path / "junk.pub")


def test_cli_keygen_sign_verify_and_predict_with_trusted_key(make_bundle, radiograph_png, tmp_path):
    from osteolens.cli.main import app

    runner = CliRunner()
    path = make_bundle(folds=1)
    result = runner.invoke(app, ["bundle", "keygen", "--out", str(tmp_path / "keys")])
    assert result.exit_code == 0, result.output
    private, public = tmp_path / "keys" / "osteolens-signing.key", tmp_path / "keys" / "osteolens-signing.pub"
    predict = ["predict", str(radiograph_png), "--model", str(path), "--out", str(tmp_path / "p"),
               "--backend", "torch", "--trusted-key", str(public)]
    result = runner.invoke(app, predict)
    assert isinstance(result.exception, BundleError) and "not signed" in str(result.exception)
    assert not (tmp_path / "p").exists()

    result = runner.invoke(app, ["bundle", "sign", str(path), "--key", str(private)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["bundle", "verify", str(path), "--trusted-key", str(public)])
    assert result.exit_code == 0 and "signature valid" in " ".join(result.output.split())
    result = runner.invoke(app, predict)
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "p" / "knee.json").read_text())["result"] != "fail"

    other = generate_keypair(tmp_path / "other")[1]
    result = runner.invoke(app, ["bundle", "verify", str(path), "--trusted-key", str(other)])
    assert isinstance(result.exception, BundleError) and "signed by another key" in str(result.exception)


@pytest.mark.slow  # builds the FastAPI app and warms the predictor up
def test_cli_serve_with_trusted_key_refuses_unsigned_and_serves_signed(make_bundle, keys, monkeypatch):
    import uvicorn

    from osteolens.cli.main import app

    (private, public), _ = keys
    path = make_bundle(folds=1)
    served = []
    monkeypatch.setattr(uvicorn, "run", lambda application, **kwargs: served.append(kwargs))
    command = ["serve", "--model", str(path), "--backend", "torch", "--trusted-key", str(public)]
    result = CliRunner().invoke(app, command)
    assert isinstance(result.exception, BundleError) and "not signed" in str(result.exception) and not served
    sign_bundle(path, private)
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 0, result.output
    assert served == [{"host": "127.0.0.1", "port": 8000, "log_level": "info"}]
