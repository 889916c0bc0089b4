"""Entry point of the ``osteolens`` command (typer + rich).

Each command group lives in its own module and imports the heavy packages inside its
command functions, so ``osteolens --help`` stays fast.
"""

from __future__ import annotations

import gc

import typer

from osteolens import __version__
from osteolens.cli import common

app = typer.Typer(
    name="osteolens",
    help="Bone-health AI on plain radiographs.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"osteolens {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """osteolens: read, preprocess, validate, train, evaluate and serve bone-health models."""


def _register() -> None:
    # One line per command module; each module exposes ``register(app)``.
    from osteolens.cli import bundle_cmd, classic_cmd, data_cmd, demo_cmd, evaluate_cmd, features_cmd, morphometry_cmd, phantom_cmd, preprocess_cmd, train_cmd, tune_cmd, predict_cmd, serve_cmd, node_cmd, explain_cmd, weights_cmd, landmarks_cmd

    for module in (bundle_cmd, classic_cmd, data_cmd, demo_cmd, evaluate_cmd, features_cmd, morphometry_cmd, phantom_cmd, preprocess_cmd, train_cmd, tune_cmd, predict_cmd, serve_cmd, node_cmd, explain_cmd, weights_cmd, landmarks_cmd):
        module.register(app)


_register()


def main() -> None:
    """Run the command line, turning OsteolensError into a one-line message and exit code 2."""
    # Commands load torch, timm, SciPy ...: millions of objects that live as long as the process.
    # The cyclic collector re-scanned them every 700 allocations while they loaded and again at
    # exit, about 0.5 s and 1 s of CPU per command (measured): collect less often, not at exit.
    gc.set_threshold(20_000)
    try:
        common.run_app(app)
    finally:
        gc.freeze()


if __name__ == "__main__":
    main()
