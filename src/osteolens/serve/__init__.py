"""Serving: the FastAPI service with its web page (:func:`create_app`) and the JSON-lines runner.

Example:
    >>> from osteolens.inference import Predictor  # doctest: +SKIP
    >>> from osteolens.serve import create_app  # doctest: +SKIP
    >>> app = create_app(Predictor("bundle.zip"), token="s3cret")  # doctest: +SKIP
"""

from __future__ import annotations

from osteolens.serve.app import DEFAULT_MAX_UPLOAD_BYTES, DEFAULT_SERVE_MAX_PIXELS, create_app
from osteolens.serve.jsonl import run_jsonl

__all__ = ["DEFAULT_MAX_UPLOAD_BYTES", "DEFAULT_SERVE_MAX_PIXELS", "create_app", "run_jsonl"]
