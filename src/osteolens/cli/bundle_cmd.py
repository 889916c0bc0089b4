"""``osteolens bundle``: sign model bundles and verify them (Ed25519, detached ``bundle.sig``)."""

from __future__ import annotations

from pathlib import Path

import typer

from osteolens.cli.common import console

bundle_app = typer.Typer(help="Sign model bundles and verify their signatures.", no_args_is_help=True)


@bundle_app.command("keygen")
def keygen(
    out: Path = typer.Option(..., "--out", "-o", help="Folder for osteolens-signing.key (secret) and osteolens-signing.pub."),
) -> None:
    """Make an Ed25519 key pair: sign with the .key, hand the .pub to whoever loads the bundles.

    Example: osteolens bundle keygen --out ~/.osteolens-keys
    """
    from osteolens.inference.signing import fingerprint, generate_keypair, load_public_key

    private, public = generate_keypair(out)
    console.print(f"private key {private} (keep it secret), public key {public}; "
                  f"fingerprint {fingerprint(load_public_key(public))[:16]}", highlight=False)


@bundle_app.command("sign")
def sign(
    bundle: Path = typer.Argument(..., help="Model bundle folder or .zip (bundle.sig is written into it)."),
    key: Path = typer.Option(..., "--key", "-k", help="Ed25519 private key (PEM), e.g. from 'osteolens bundle keygen'."),
) -> None:
    """Sign a bundle: a detached signature over bundle.json, which holds every file's sha256.

    Example: osteolens bundle sign runs/knee/bundle --key ~/.osteolens-keys/osteolens-signing.key
    """
    from osteolens.inference.signing import sign_bundle

    key_id = sign_bundle(bundle, key)
    console.print(f"signed {bundle} (key fingerprint {key_id[:16]})", highlight=False)


@bundle_app.command("verify")
def verify(
    bundle: Path = typer.Argument(..., help="Model bundle folder or .zip."),
    trusted_key: Path = typer.Option(..., "--trusted-key", help="Ed25519 public key (PEM) the bundle must be signed by."),
) -> None:
    """Check a bundle's signature and every file's sha256 (exit code 2 when refused).

    Example: osteolens bundle verify runs/knee/bundle --trusted-key osteolens-signing.pub
    """
    from osteolens.inference.signing import verify_bundle

    key_id = verify_bundle(bundle, trusted_key)
    console.print(f"{bundle}: signature valid (key fingerprint {key_id[:16]}), every file intact", highlight=False)


def register(app: typer.Typer) -> None:
    """Add the ``bundle`` command group."""
    app.add_typer(bundle_app, name="bundle")
