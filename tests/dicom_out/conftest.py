"""Fixtures of the DICOM output tests: the inference tests' tiny bundles, a phantom DICOM and dciodvfy."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.inference.conftest import create_model, make_bundle, preprocessing, radiograph_png  # noqa: F401 (fixtures)


@pytest.fixture(scope="session")
def phantom_dicom(tmp_path_factory) -> Path:
    """A 64 x 64 phantom DX (osteolens.phantom) with a patient name and accession number added."""
    import pydicom

    from osteolens.phantom import generate_cohort

    folder = tmp_path_factory.mktemp("phantom")
    generate_cohort(folder, specimens=1, seed=0, size=64, formats=("dicom",))
    path = folder / "dicom" / "S0001_L1_AP.dcm"
    ds = pydicom.dcmread(path)
    ds.PatientName, ds.AccessionNumber, ds.ReferringPhysicianName = "DOE^JANE", "ACC0001", "HOUSE^GREGORY"
    ds.save_as(path)
    return path


def dciodvfy_errors(path: Path) -> list[str]:
    """dicom3tools' ``dciodvfy`` lines starting with "Error" (skips when it is not installed)."""
    from tests.conftest import require_dciodvfy

    report = subprocess.run([require_dciodvfy(), str(path)], capture_output=True, text=True, timeout=120)
    return [line for line in (report.stdout + report.stderr).splitlines() if line.startswith("Error")]
