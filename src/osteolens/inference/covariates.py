"""The covariates a model takes besides the image: from the request, else from the DICOM tags.

Request fields win over tags (a clinician may correct a wrong header). ``sex`` falls back
to ``PatientSex`` (``Radiograph.meta.sex``) and ``age`` to ``PatientAge``
(``meta.age_years``); any other covariate must be given. A missing one is an error that
names the field: the model never silently predicts with an invented value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from osteolens.errors import ModelError
from osteolens.io.radiograph import RadiographMeta

_FROM_TAGS = {"sex": ("sex", "PatientSex"), "age": ("age_years", "PatientAge")}


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or (isinstance(value, float) and np.isnan(value))


def gather_covariates(
    names: Sequence[str], given: Mapping[str, Any] | None, meta: RadiographMeta | None
) -> dict[str, Any]:
    """The value of each covariate in ``names``.

    Raises:
        ModelError: a covariate is neither given nor in the image's tags; the message names it.
    """
    given = dict(given or {})
    values: dict[str, Any] = {}
    for name in names:
        value = given.get(name)
        source = "request"
        if _missing(value) and name in _FROM_TAGS and meta is not None:
            value = getattr(meta, _FROM_TAGS[name][0])
            source = "tag"
        if _missing(value) or (name == "sex" and source == "tag" and value not in ("M", "F")):
            tag = f" and the image has no usable DICOM {_FROM_TAGS[name][1]} tag" if name in _FROM_TAGS else ""
            raise ModelError(
                f"covariate '{name}' is required by this model (trained with {list(names)}) but was not given{tag}. "
                f"Fix: pass it, e.g. --covariate {name}=<value> on the command line or the form field '{name}' over HTTP."
            )
        values[name] = value
    return values


def encode_covariates(
    names: Sequence[str],
    scaling: Mapping[str, Mapping[str, float]],
    given: Mapping[str, Any] | None,
    meta: RadiographMeta | None,
) -> np.ndarray | None:
    """``float32 [1, len(names)]`` encoded as in training (``osteolens.models.tabular.encode``), None when no covariates."""
    if not names:
        return None
    from osteolens.models.tabular import encode

    values = gather_covariates(names, given, meta)
    for name, value in values.items():
        if name != "sex":
            try:
                values[name] = float(value)
            except (TypeError, ValueError):
                raise ModelError(f"covariate '{name}' must be a number, got {value!r}.") from None
    return encode(values, list(names), scaling)
