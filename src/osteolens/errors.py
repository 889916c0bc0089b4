"""The one exception family of osteolens.

Every message names the file or field, what is wrong, and what to do about it.
"""

from __future__ import annotations

from pathlib import Path


class OsteolensError(Exception):
    """Base class of every error osteolens raises on purpose."""


def _describe(subject: str | Path | None, reason: str, fix: str | None) -> str:
    text = f"{subject}: {reason}" if subject is not None else reason
    if fix:
        text += f" Fix: {fix}"
    return text


class RadiographReadError(OsteolensError):
    """A file could not be read as a radiograph.

    Attributes:
        path: the file that failed.
        reason: what is wrong with it.
        fix: what the user can do, or None.
    """

    def __init__(self, path: str | Path, reason: str, fix: str | None = None) -> None:
        self.path = Path(path)
        self.reason = reason
        self.fix = fix
        super().__init__(_describe(self.path, reason, fix))


class FileWriteError(OsteolensError):
    """A file could not be written (unwritable folder, full disk)."""

    def __init__(self, path: str | Path, reason: str, fix: str | None = None) -> None:
        self.path = Path(path)
        super().__init__(_describe(self.path, reason, fix))


class RadiographWriteError(FileWriteError):
    """A radiograph could not be written (bad array, unwritable path)."""


class ManifestError(OsteolensError):
    """A manifest, label sheet or class-folder tree is malformed."""

    def __init__(self, source: str | Path | None, reason: str, fix: str | None = None) -> None:
        self.source = source
        super().__init__(_describe(source, reason, fix))


class TransformError(OsteolensError):
    """A preprocessing step was misconfigured or got an input it cannot handle."""


class ConfigError(OsteolensError):
    """A configuration file or option is invalid."""

    def __init__(self, source: str | Path | None, reason: str, fix: str | None = None) -> None:
        self.source = source
        super().__init__(_describe(source, reason, fix))


class AnnotationError(OsteolensError):
    """Landmarks or masks are incomplete or inconsistent."""


class ModelError(OsteolensError):
    """A model could not be built, loaded or run (unknown name, missing weights, ...)."""


class BundleError(OsteolensError):
    """A model bundle is missing, corrupt or incompatible."""


class EvaluationError(OsteolensError):
    """Predictions or evaluation options are unusable (missing columns, one class only, bad option)."""

    def __init__(self, source: str | Path | None, reason: str, fix: str | None = None) -> None:
        self.source = source
        super().__init__(_describe(source, reason, fix))
