"""The shared AASCE spines: QC of the training annotations, the grouped split, prediction at original size."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from osteolens.landmarks.bundle import write_landmark_bundle
from osteolens.landmarks.decode import PositionPrior
from osteolens.landmarks.model import LandmarkNet
from osteolens.landmarks.names import VERTEBRAE
from osteolens.landmarks.predict import LandmarkDetector
from osteolens.landmarks.preprocess import to_network, to_original
from osteolens.landmarks.train import LandmarkConfig, grouped_split, load_samples, repair
from osteolens.morphometry import check_annotations
from tests.conftest import require_dataset

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def aasce():
    folder = require_dataset("spine_landmarks_aasce")
    config = LandmarkConfig(landmarks=str(folder / "landmarks.csv"), labels=str(folder / "labels.csv"))
    return folder, load_samples(config)


def test_flagged_annotations_are_repaired_or_dropped(aasce):
    folder, (samples, names, broken) = aasce
    labels = pd.read_csv(folder / "labels.csv")
    assert names == list(VERTEBRAE) and len(samples) == len(labels)
    flagged = set(labels.loc[labels["qc_flags"].notna(), "image"])
    assert flagged <= set(broken)  # every flag of the source is seen
    for sample in samples:
        if sample.image in broken and broken[sample.image]["training"] == "repaired":
            assert not check_annotations(repair(sample.corners), names, sample.shape)
    assert sum(b["training"] == "dropped" for b in broken.values()) < len(broken) / 2


def test_grouped_split_keeps_patients_apart(aasce):
    _, (samples, _, _) = aasce
    train, val = grouped_split(samples, 0.2, 0)
    assert not {samples[i].patient for i in train} & {samples[i].patient for i in val}
    assert 0.15 < len(val) / len(samples) < 0.25


def test_prediction_is_in_the_original_pixels(aasce, tmp_path):
    _, (samples, _, _) = aasce
    torch.manual_seed(0)
    net = LandmarkNet("tf_efficientnet_lite0", (1, 2, 3), head_channels=16).eval()
    detector = LandmarkDetector.from_path(write_landmark_bundle(tmp_path / "b", net, (512, 256), VERTEBRAE))
    for sample in samples[:2]:
        found = detector.predict_file(sample.path)
        assert found.image_shape == sample.shape and found.detection.corners.shape == (17, 4, 2)
        centres = found.detection.corners.mean(axis=1)
        assert (centres[:, 0] > -1).all() and (centres[:, 0] < sample.shape[1]).all()
        assert (np.diff(centres[:, 1]) >= 0).all()
        scale = (sample.shape[1] / 256, sample.shape[0] / 512)
        assert np.allclose(to_original(to_network(sample.corners, scale), scale), sample.corners)


def test_position_prior_on_the_shared_spines_matches_the_table(aasce):
    folder, (samples, _, broken) = aasce
    sound = [s for s in samples if s.image not in broken]
    prior = PositionPrior.fit([s.corners for s in sound], [s.shape[0] for s in sound])
    table = pd.read_csv(folder / "landmarks.csv")
    labels = pd.read_csv(folder / "labels.csv").set_index("image")
    centres = table[table["image"].isin({s.image for s in sound})].groupby(["image", "vertebra"])["y"].mean()
    t1 = centres.xs("T1", level="vertebra") / labels.loc[centres.xs("T1", level="vertebra").index, "out_height"]
    l5 = centres.xs("L5", level="vertebra") / labels.loc[centres.xs("L5", level="vertebra").index, "out_height"]
    assert np.allclose(prior.first, (t1.mean(), t1.std(ddof=0)), atol=1e-6)
    assert np.allclose(prior.last, (l5.mean(), l5.std(ddof=0)), atol=1e-6)
    # the AASCE crops: T1 near the top, L5 near the bottom, each within less than a vertebra's spacing
    assert 0.03 < prior.first[0] < 0.07 and prior.first[1] < 0.03 and 0.85 < prior.last[0] < 0.95


def test_level_shift_finds_a_one_level_offset_on_every_sound_shared_spine(aasce):
    from osteolens.landmarks.evaluate import level_shift

    _, (samples, _, broken) = aasce
    sound = [s for s in samples if s.image not in broken]
    assert len(sound) > 400
    for sample in sound:
        true = sample.corners
        down = np.concatenate([true[1:], true[-1:] + (true[-1] - true[-2]).mean(axis=0)])  # "T1" on the true T2
        up = np.concatenate([true[:1] - (true[1] - true[0]).mean(axis=0), true[:-1]])
        assert (level_shift(true, true), level_shift(down, true), level_shift(up, true)) == (0, 1, -1), sample.image


def test_relabel_by_the_reported_level_shift_puts_every_corner_on_its_true_level(aasce):
    from osteolens.landmarks.evaluate import level_shift
    from osteolens.landmarks.relabel import shift_levels
    from osteolens.morphometry.vertebra import CORNERS

    _, (samples, names, broken) = aasce
    for sample in [s for s in samples if s.image not in broken][:25]:
        true = sample.corners
        down = np.concatenate([true[1:], true[-1:] + (true[-1] - true[-2]).mean(axis=0)])  # "T1" on the true T2
        shift = level_shift(down, true)
        table = pd.DataFrame([{"image": sample.image, "vertebra": name, "corner": corner, "x": down[k, c, 0],
                               "y": down[k, c, 1]} for k, name in enumerate(names) for c, corner in enumerate(CORNERS)])
        fixed = shift_levels(table, sample.image, shift)
        assert shift == 1 and fixed["vertebra"].iloc[-1] == "S1"
        for row in fixed[fixed["vertebra"].isin(names)].itertuples():
            k, c = names.index(row.vertebra), CORNERS.index(row.corner)
            assert (row.x, row.y) == (true[k, c, 0], true[k, c, 1])
