"""A Pipeline: an ordered list of transforms that serialises to JSON / YAML and replays exactly."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from osteolens.errors import ConfigError, TransformError
from osteolens.transforms.base import Transform, build_transform


class Pipeline:
    """Transforms applied one after the other.

    Files hold ``{"steps": [{"name": ..., "params": {...}}, ...]}``; a bare list of steps is
    accepted too. :meth:`fingerprint` is the SHA-256 of the canonical JSON of the steps, so
    two pipelines with equal parameters share cache entries and any change gets new ones.

    Example:
        >>> pipe = Pipeline.from_yaml("- name: resize\\n  params: {factor: 0.5}\\n- name: invert\\n")
        >>> pipe(np.zeros((4, 6), np.float32)).shape
        (2, 3)
        >>> Pipeline.from_json(pipe.to_json()).fingerprint() == pipe.fingerprint()
        True
    """

    def __init__(self, steps: Iterable[Transform] = ()) -> None:
        self.steps = list(steps)
        for index, step in enumerate(self.steps):
            if not isinstance(step, Transform):
                raise TransformError(
                    f"pipeline step {index} is {step!r}, not a Transform. Fix: build it with build_transform({{'name': ...}})."
                )

    # ------------------------------------------------------------------ running
    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        out = np.asarray(pixels, dtype=np.float32)
        for step in self.steps:
            out = step(out)
        return out

    def __len__(self) -> int:
        return len(self.steps)

    def __iter__(self) -> Iterator[Transform]:
        return iter(self.steps)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Pipeline) and self.to_config() == other.to_config()

    def __repr__(self) -> str:
        return f"Pipeline({self.steps!r})"

    # ------------------------------------------------------------------ config
    @classmethod
    def from_config(cls, config: list[dict[str, Any]] | dict[str, Any]) -> Pipeline:
        """Build from a list of ``{"name", "params"}`` steps (or ``{"steps": [...]}``)."""
        if isinstance(config, dict) and "steps" in config:
            config = config["steps"]
        if config is None:
            config = []
        if not isinstance(config, list):
            raise TransformError(
                f"a pipeline config must be a list of steps, got {type(config).__name__}. "
                "Fix: write a list such as [{'name': 'percentile_normalise'}, {'name': 'resize', 'params': {'size': 256}}]."
            )
        steps = []
        for index, step in enumerate(config):
            try:
                steps.append(build_transform(step))
            except TransformError as exc:
                raise TransformError(f"pipeline step {index}: {exc}") from exc
        return cls(steps)

    def to_config(self) -> list[dict[str, Any]]:
        """The steps as ``[{"name": ..., "params": {...}}, ...]``."""
        return [step.to_config() for step in self.steps]

    def fingerprint(self) -> str:
        """SHA-256 (hex) of the canonical JSON of :meth:`to_config` (sorted keys, no spaces)."""
        canonical = json.dumps(self.to_config(), sort_keys=True, separators=(",", ":"), allow_nan=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    # ------------------------------------------------------------------ files
    def to_json(self, path: str | Path | None = None) -> str:
        """The pipeline as JSON text; also written to ``path`` when given."""
        text = json.dumps({"steps": self.to_config()}, indent=2) + "\n"
        if path is not None:
            Path(path).write_text(text)
        return text

    def to_yaml(self, path: str | Path | None = None) -> str:
        """The pipeline as YAML text; also written to ``path`` when given."""
        import yaml

        text = yaml.safe_dump({"steps": self.to_config()}, sort_keys=False)
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_json(cls, source: str | Path) -> Pipeline:
        """Read from a JSON file path or JSON text."""
        text, origin = _text_of(source, ("[", "{"))
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(origin, f"not valid JSON ({exc}).", "write the pipeline as {\"steps\": [...]}.") from exc
        return cls._from_data(data, origin)

    @classmethod
    def from_yaml(cls, source: str | Path) -> Pipeline:
        """Read from a YAML file path or YAML text (JSON is valid YAML too)."""
        import yaml

        text, origin = _text_of(source, ("[", "{", "-", "steps:", "#"))
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(origin, f"not valid YAML ({exc}).", "write the pipeline as 'steps:' followed by '- name: ...' items.") from exc
        return cls._from_data(data, origin)

    @classmethod
    def from_file(cls, path: str | Path) -> Pipeline:
        """Read ``.json`` with :meth:`from_json`, anything else (``.yaml``, ``.yml``) with :meth:`from_yaml`."""
        path = Path(path)
        return cls.from_json(path) if path.suffix.lower() == ".json" else cls.from_yaml(path)

    @classmethod
    def _from_data(cls, data: Any, origin: str | Path | None) -> Pipeline:
        if origin is None:
            return cls.from_config(data)
        try:
            return cls.from_config(data)
        except TransformError as exc:
            raise TransformError(f"{origin}: {exc}") from exc


def _text_of(source: str | Path, text_starts: tuple[str, ...]) -> tuple[str, str | Path | None]:
    """Return ``(text, origin)``: the file's text when ``source`` is a path, else ``source`` itself."""
    if isinstance(source, str) and ("\n" in source or source.lstrip().startswith(text_starts)):
        return source, None
    path = Path(source)
    try:
        return path.read_text(), path
    except OSError as exc:
        raise ConfigError(path, f"cannot read the pipeline file ({exc.strerror or exc}).", "check the path.") from exc
