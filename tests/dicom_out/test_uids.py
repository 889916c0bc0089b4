"""Deterministic UIDs of the DICOM results."""

from __future__ import annotations

import uuid

from osteolens.dicom_out.uids import derived_uid, new_study_uids, result_uids


def test_derived_uid_is_the_2_25_form_of_a_name_based_uuid():
    namespace = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/osteolens/osteolens/dicom")
    expected = uuid.uuid5(namespace, "1.2.3\x00abc\x00sr")
    assert expected.version == 5
    assert derived_uid("1.2.3", "abc", "sr") == f"2.25.{expected.int}"
    assert len(derived_uid("x")) <= 64
    assert derived_uid("1.2.3", "abcsr") != derived_uid("1.2.3", "abc", "sr")  # sources are separated


def test_result_uids_depend_on_input_and_model_only():
    one = result_uids("1.2.9", "1.2.9.1", "d" * 64)
    assert one == result_uids("1.2.9", "1.2.9.1", "d" * 64)
    other_image = result_uids("1.2.9", "1.2.9.2", "d" * 64)
    assert other_image.sr_series == one.sr_series and other_image.sr_instance != one.sr_instance
    assert len({one.sr_series, one.sr_instance, one.sc_series, one.sc_instance, one.tracking}) == 5
    assert result_uids("1.2.9", "1.2.9.1", "e" * 64).sr_instance != one.sr_instance
    assert new_study_uids("f" * 64, "P1")["study"] != new_study_uids("f" * 64, "P2")["study"]
