"""The prediction as a Comprehensive SR holding a TID 1500 Measurement Report (highdicom.sr).

One measurement group (TID 1501) per radiograph, with the radiograph as its source image:

* ``(DCM, 121071, "Finding")`` = the predicted class (qualitative evaluation), coded with
  SNOMED CT where a code exists (:data:`CLASS_CODES`), else ``(99OSTEOLENS, OSTL-C<k>, label)``;
* ``(99OSTEOLENS, OSTL-P<k>, "Probability of <label>")`` for every class, UCUM ``{probability}``;
  or, for regression, the predicted value in the target's unit (:data:`TARGETS`);
* ``(99OSTEOLENS, OSTL-THRESHOLD, "Decision threshold")`` (binary models), UCUM ``{probability}``;
* ``(99OSTEOLENS, OSTL-CALIBRATION, "Calibration method")`` = Platt, isotonic, temperature or none;
* the model as algorithm identification (TID 4019): bundle name, version and digest.
"""

from __future__ import annotations

import re
from typing import Any

from osteolens.dicom_out.uids import ResultUIDs

#: Coding scheme designator of osteolens' private codes (PS3.16 8.2: "99" prefix).
PRIVATE = "99OSTEOLENS"
#: SNOMED CT codes of class names (matched ignoring case, spaces, "-" and "_").
CLASS_CODES = {
    "normal": ("17621005", "SCT", "Normal"),
    "osteopenia": ("312894000", "SCT", "Osteopenia"),
    "osteoporosis": ("64859006", "SCT", "Osteoporosis"),
    "fracture": ("125605004", "SCT", "Fracture of bone"),
}
#: Regression targets osteolens knows: (private code, meaning, UCUM unit, unit meaning).
TARGETS = {
    "bmd": ("OSTL-BMD", "Predicted bone mineral density", "mg/cm3", "milligram per cubic centimeter"),
    "boneage_months": ("OSTL-BONEAGE", "Predicted bone age", "mo", "month"),
    "bone_age_months": ("OSTL-BONEAGE", "Predicted bone age", "mo", "month"),
}
CALIBRATIONS = {"platt": "Platt scaling", "isotonic": "Isotonic regression", "temperature": "Temperature scaling",
                None: "Not calibrated"}
SERIES_NUMBER = 990
#: The procedure reported of every osteolens SR.
RADIOGRAPHY = ("363680008", "SCT", "Radiographic imaging procedure")


def _code(value: str, scheme: str, meaning: str) -> Any:
    from highdicom.sr import CodedConcept

    return CodedConcept(value=value, scheme_designator=scheme, meaning=meaning[:64])


def class_code(label: str, index: int) -> Any:
    """The coded value of a class: SNOMED CT where :data:`CLASS_CODES` has it, else private."""
    known = CLASS_CODES.get(re.sub(r"[\s_-]+", "", label.lower()))
    return _code(*known) if known else _code(f"OSTL-C{index}", PRIVATE, label)


def target_concept(target: str | None, manifest: dict[str, Any]) -> tuple[Any, Any]:
    """(concept name, UCUM unit) of a regression value; ``target_unit`` in ``bundle.json`` wins."""
    code, meaning, unit, unit_meaning = TARGETS.get(
        (target or "").lower(), ("OSTL-VALUE", f"Predicted {target or 'value'}", "1", "no units"))
    unit = manifest.get("target_unit") or unit
    unit_meaning = unit if manifest.get("target_unit") else unit_meaning
    return _code(code, PRIVATE, meaning), _code(unit, "UCUM", unit_meaning)


def algorithm(bundle: Any) -> Any:
    """TID 4019 Algorithm Identification: the bundle's name, version (creation time) and digest."""
    from highdicom.sr import AlgorithmIdentification

    version = str(bundle.manifest.get("created") or bundle.digest[:16])
    osteolens_version = bundle.manifest.get("osteolens_version") or "unknown"
    return AlgorithmIdentification(name=bundle.name[:64], version=version[:64],
                                   parameters=[f"bundle sha256 {bundle.digest}", f"osteolens {osteolens_version}"])


def _measurements(record: dict[str, Any], bundle: Any) -> list[Any]:
    from highdicom.sr import Measurement

    probability = _code("{probability}", "UCUM", "probability")
    if record["task"] == "regression":
        name, unit = target_concept(record.get("target"), bundle.manifest)
        return [Measurement(name=name, value=float(record["value"]), unit=unit)]
    items = [Measurement(name=_code(f"OSTL-P{k}", PRIVATE, f"Probability of {label}"),
                         value=float(record["probabilities"][label]), unit=probability)
             for k, label in enumerate(bundle.labels)]
    if record.get("threshold") is not None:
        items.append(Measurement(name=_code("OSTL-THRESHOLD", PRIVATE, "Decision threshold"),
                                 value=float(record["threshold"]), unit=probability))
    return items


def _evaluations(record: dict[str, Any], bundle: Any) -> list[Any]:
    from highdicom.sr import QualitativeEvaluation

    method = (bundle.calibration or {}).get("method")
    items = []
    if record.get("label") is not None:
        items.append(QualitativeEvaluation(name=_code("121071", "DCM", "Finding"),
                                           value=class_code(record["label"], bundle.labels.index(record["label"]))))
    if record["task"] != "regression":
        items.append(QualitativeEvaluation(
            name=_code("OSTL-CALIBRATION", PRIVATE, "Calibration method"),
            value=_code(f"OSTL-CAL-{(method or 'NONE').upper()}"[:16], PRIVATE, CALIBRATIONS.get(method, method))))
    return items


def library_entry(reference: Any) -> Any:
    """The header as the image library sees it.

    highdicom's projection-radiography descriptors (TID 1603) need Patient Orientation and
    Imager Pixel Spacing, which many CR files lack; without them the entry keeps the
    descriptors of every image (modality, coded from the SOP class, rows and columns).
    """
    from copy import copy

    orientation = reference.get("PatientOrientation")
    if reference.get("ImagerPixelSpacing") and orientation is not None and len(orientation) == 2:
        return reference
    entry = copy(reference)
    entry.Modality = ""
    return entry


def device_context(uid: str, name: str, model_name: str) -> Any:
    """TID 1002 observation context: osteolens as the device observer ``uid`` (name, model name)."""
    from highdicom.sr import DeviceObserverIdentifyingAttributes, ObservationContext, ObserverContext
    from pydicom.sr.codedict import codes

    device = DeviceObserverIdentifyingAttributes(uid=uid, name=name[:64], manufacturer_name="osteolens",
                                                 model_name=model_name[:64])
    return ObservationContext(observer_device_context=ObserverContext(
        observer_type=codes.DCM.Device, observer_identifying_attributes=device))


def comprehensive_sr(reference: Any, report: Any, *, series_uid: str, instance_uid: str, series_number: int,
                     description: str) -> Any:
    """A complete ``ComprehensiveSR`` of ``report`` with ``reference`` as evidence, in its study, in a new
    series, declaring the private coding scheme."""
    from highdicom.sr import ComprehensiveSR
    from pydicom.dataset import Dataset

    from osteolens import __version__

    sr = ComprehensiveSR(
        evidence=[reference], content=report, series_instance_uid=series_uid, series_number=series_number,
        sop_instance_uid=instance_uid, instance_number=1, manufacturer="osteolens", is_complete=True,
        series_description=description[:64], software_versions=__version__,
    )
    scheme = Dataset()
    scheme.CodingSchemeDesignator = PRIVATE
    scheme.CodingSchemeName = "osteolens private codes (docs/dicom.md)"
    scheme.CodingSchemeResponsibleOrganization = "osteolens"
    sr.CodingSchemeIdentificationSequence = [scheme]
    return sr


def build_sr(reference: Any, record: dict[str, Any], bundle: Any, uids: ResultUIDs) -> Any:
    """A ``highdicom.sr.ComprehensiveSR`` of ``record`` (the prediction's JSON record) about the
    radiograph ``reference`` (its header), in its study, in a new series."""
    from highdicom.sr import (MeasurementReport, MeasurementsAndQualitativeEvaluations,
                              SourceImageForMeasurementGroup, TrackingIdentifier)

    context = device_context(uids.device, bundle.name, str(bundle.architecture.get("name") or "unknown"))
    group = MeasurementsAndQualitativeEvaluations(
        tracking_identifier=TrackingIdentifier(uid=uids.tracking, identifier=f"osteolens {bundle.name}"[:64]),
        algorithm_id=algorithm(bundle),
        measurements=_measurements(record, bundle),
        qualitative_evaluations=_evaluations(record, bundle),
        source_images=[SourceImageForMeasurementGroup(reference.SOPClassUID, reference.SOPInstanceUID)],
    )
    report = MeasurementReport(
        observation_context=context,
        procedure_reported=_code(*RADIOGRAPHY),
        imaging_measurements=[group],
        referenced_images=[library_entry(reference)],
    )
    return comprehensive_sr(reference, report, series_uid=uids.sr_series, instance_uid=uids.sr_instance,
                            series_number=SERIES_NUMBER, description=f"osteolens {bundle.name} results")
