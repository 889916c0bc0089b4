"""Ed25519 signatures of model bundles: load only bundles signed by a key you trust.

``bundle.json`` holds the sha256 of every other file of a bundle, so one signature over it
covers the whole bundle. :func:`sign_bundle` writes a detached ``bundle.sig`` (JSON: algorithm,
the public key's fingerprint, the base64 signature) into the bundle folder or zip;
:func:`verify_bundle` and ``load_bundle(path, trusted_key=...)`` refuse a bundle that is
unsigned, signed by another key, or altered (the signature, then every file's sha256).

The signed message is ``osteolens-bundle-signature-v1`` and a newline, then the canonical
JSON of ``bundle.json`` (sorted keys, no whitespace, UTF-8): re-indenting the file keeps the
signature valid, any change of its content breaks it.

Example:
    >>> private, public = generate_keypair("keys")  # doctest: +SKIP
    >>> sign_bundle("runs/knee/bundle", private)  # doctest: +SKIP
    >>> load_bundle("runs/knee/bundle", trusted_key=public)  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

from osteolens.errors import BundleError, ConfigError
from osteolens.inference.bundle import MANIFEST_NAME, SIGNATURE_NAME, _check_hashes, _read_raw
from osteolens.io._files import write_atomic

ALGORITHM = "ed25519"
_CONTEXT = b"osteolens-bundle-signature-v1\n"
PRIVATE_NAME = "osteolens-signing.key"
PUBLIC_NAME = "osteolens-signing.pub"


def canonical_manifest(manifest: dict[str, Any]) -> bytes:
    """The signed message: the context line, then ``manifest`` as canonical JSON."""
    text = json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return _CONTEXT + text.encode("utf-8")


def fingerprint(public_key: Any) -> str:
    """sha256 (hex) of the raw 32-byte Ed25519 public key."""
    from cryptography.hazmat.primitives import serialization

    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def generate_keypair(out: str | Path) -> tuple[Path, Path]:
    """Write a new Ed25519 key pair into folder ``out``: ``osteolens-signing.key`` (PKCS#8 PEM,
    readable by its owner only: keep it secret) and ``osteolens-signing.pub`` (PEM, hand it out).

    Raises:
        ConfigError: a key file already exists there (never overwritten).
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    folder = Path(out)
    private_path, public_path = folder / PRIVATE_NAME, folder / PUBLIC_NAME
    for path in (private_path, public_path):
        if path.exists():
            raise ConfigError(path, "already exists; a key pair is never overwritten.", "choose another --out folder.")
    folder.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    descriptor = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(private_pem)
    write_atomic(public_path, key.public_key().public_bytes(serialization.Encoding.PEM,
                                                            serialization.PublicFormat.SubjectPublicKeyInfo))
    return private_path, public_path


def _read_pem(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(path, f"cannot read the {what} ({exc.strerror or exc}).", "check the path.") from exc


def load_private_key(key: Any) -> Any:
    """An ``Ed25519PrivateKey`` from a PEM file path (or the key itself)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    if isinstance(key, Ed25519PrivateKey):
        return key
    path = Path(key)
    try:
        loaded = serialization.load_pem_private_key(_read_pem(path, "private key"), password=None)
    except (TypeError, ValueError) as exc:
        raise ConfigError(path, f"not an unencrypted PEM private key ({exc}).",
                          "pass the .key file written by 'osteolens bundle keygen'.") from exc
    if not isinstance(loaded, Ed25519PrivateKey):
        raise ConfigError(path, f"a {type(loaded).__name__}, not an Ed25519 key.", "make one with 'osteolens bundle keygen'.")
    return loaded


def load_public_key(key: Any) -> Any:
    """An ``Ed25519PublicKey`` from a PEM file path (or the key itself)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if isinstance(key, Ed25519PublicKey):
        return key
    path = Path(key)
    data = _read_pem(path, "public key")
    if b"PRIVATE KEY" in data:
        raise ConfigError(path, "is a private key; a trusted key is the public half.",
                          f"pass the {PUBLIC_NAME} file and keep the private key on the signing machine.")
    try:
        loaded = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise ConfigError(path, f"not a PEM public key ({exc}).",
                          "pass the .pub file written by 'osteolens bundle keygen'.") from exc
    if not isinstance(loaded, Ed25519PublicKey):
        raise ConfigError(path, f"a {type(loaded).__name__}, not an Ed25519 key.", "make one with 'osteolens bundle keygen'.")
    return loaded


def sign_bundle(path: str | Path, private_key: Any) -> str:
    """Sign a bundle folder or zip with ``private_key`` (PEM path or key): writes ``bundle.sig``
    into it, replacing an earlier signature. The files' hashes are checked first.

    Returns:
        The fingerprint of the signing key's public half.

    Raises:
        BundleError: the bundle is missing or corrupt. ConfigError: the key is unusable.
    """
    path = Path(path)
    key = load_private_key(private_key)
    manifest, blobs, _ = _read_raw(path, any_task=True)
    _check_hashes(manifest, blobs, path)
    key_id = fingerprint(key.public_key())
    record = {"algorithm": ALGORITHM, "key_fingerprint": key_id,
              "signature": base64.b64encode(key.sign(canonical_manifest(manifest))).decode("ascii")}
    text = json.dumps(record, indent=2) + "\n"
    if path.is_dir():
        write_atomic(path / SIGNATURE_NAME, text)
        return key_id
    buffer = io.BytesIO()
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as target:
        for item in source.infolist():
            if item.filename != SIGNATURE_NAME:
                target.writestr(item, source.read(item))
        target.writestr(SIGNATURE_NAME, text)
    write_atomic(path, buffer.getvalue())
    return key_id


def check_signature(manifest: dict[str, Any], signature: bytes | None, trusted_key: Any, where: Path) -> str:
    """Refuse ``manifest`` unless ``signature`` (the ``bundle.sig`` bytes) is a valid signature of
    it by ``trusted_key``. Returns the key's fingerprint."""
    from cryptography.exceptions import InvalidSignature

    key = load_public_key(trusted_key)
    key_id = fingerprint(key)
    if signature is None:
        raise BundleError(f"{where}: the bundle is not signed (no {SIGNATURE_NAME}) and a trusted key is required. "
                          "Fix: sign it with 'osteolens bundle sign BUNDLE --key KEY', or load it without a trusted key.")
    try:
        record = json.loads(signature)
        raw = base64.b64decode(record["signature"], validate=True)
        if record.get("algorithm") != ALGORITHM:
            raise ValueError(f"algorithm {record.get('algorithm')!r}")
    except (ValueError, TypeError, KeyError) as exc:
        raise BundleError(f"{where}: {SIGNATURE_NAME} is unreadable ({exc}). Fix: sign the bundle again.") from exc
    signer = str(record.get("key_fingerprint", "?"))
    if signer != key_id:
        raise BundleError(f"{where}: signed by another key (fingerprint {signer[:16]}), not the trusted key "
                          f"({key_id[:16]}). Fix: pass the signer's public key, or have the bundle signed by a trusted key.")
    try:
        key.verify(raw, canonical_manifest(manifest))
    except InvalidSignature as exc:
        raise BundleError(f"{where}: the signature does not match {MANIFEST_NAME}: the bundle was altered after "
                          "signing. Fix: get the bundle again from its publisher, or re-sign it if you changed it.") from exc
    return key_id


def verify_bundle(path: str | Path, trusted_key: Any) -> str:
    """Check a bundle's signature by ``trusted_key`` (PEM path or key) and every file's sha256,
    without building the model. Returns the key's fingerprint.

    Raises:
        BundleError: unsigned, signed by another key, or altered.
    """
    path = Path(path)
    manifest, blobs, signature = _read_raw(path, any_task=True)
    key_id = check_signature(manifest, signature, trusted_key, path)
    _check_hashes(manifest, blobs, path)
    return key_id


__all__ = ["canonical_manifest", "fingerprint", "generate_keypair", "load_private_key", "load_public_key",
           "sign_bundle", "verify_bundle"]
