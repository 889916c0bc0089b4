"""Deterministic UIDs of the DICOM results, so that a rerun replaces rather than duplicates.

Every UID is ``2.25.<integer of a UUID>`` (PS3.5 B.2), the UUID being the name-based
(SHA-1, version 5) UUID of the sources: no registered root is needed and the same sources
always give the same UID. (``pydicom.uid.generate_uid(prefix=None, entropy_srcs=...)``
ignores its sources and returns a random UUID, so it cannot be used here.)

* results of a DICOM input: from its SOP Instance UID (instances) or Study Instance UID
  (series: one SR series and one SC series per study and model) and the bundle digest;
* a new study for a PNG / JPEG input: from the file's sha256 and the patient ID, so the
  same file for the same patient always lands in the same study.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

#: The namespace of osteolens' name-based UUIDs.
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/osteolens/osteolens/dicom")


def derived_uid(*sources: str) -> str:
    """A ``2.25.`` UID that depends on ``sources`` only.

    Example:
        >>> derived_uid("1.2.3", "abc", "sr") == derived_uid("1.2.3", "abc", "sr")
        True
        >>> derived_uid("1.2.3", "abc", "sr").startswith("2.25.")
        True
    """
    return f"2.25.{uuid.uuid5(_NAMESPACE, chr(0).join(sources)).int}"


@dataclass(frozen=True)
class ResultUIDs:
    """The UIDs of the objects written for one radiograph."""

    sr_series: str
    sr_instance: str
    sc_series: str
    sc_instance: str
    tracking: str
    device: str


def result_uids(study_uid: str, instance_uid: str, digest: str) -> ResultUIDs:
    """UIDs of the SR and the SC of the input ``instance_uid`` (in ``study_uid``) by the bundle ``digest``."""
    return ResultUIDs(
        sr_series=derived_uid(study_uid, digest, "sr-series"),
        sr_instance=derived_uid(instance_uid, digest, "sr"),
        sc_series=derived_uid(study_uid, digest, "sc-series"),
        sc_instance=derived_uid(instance_uid, digest, "sc"),
        tracking=derived_uid(instance_uid, digest, "tracking"),
        device=derived_uid(digest, "device"),
    )


def new_study_uids(file_sha256: str, patient_id: str) -> dict[str, str]:
    """Study, series and instance UIDs of a non-DICOM input converted into a new study."""
    return {
        "study": derived_uid(patient_id, file_sha256, "study"),
        "series": derived_uid(patient_id, file_sha256, "image-series"),
        "instance": derived_uid(patient_id, file_sha256, "image"),
    }
