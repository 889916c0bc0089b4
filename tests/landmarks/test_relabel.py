"""Renaming a detection's levels by whole vertebrae (osteolens landmarks relabel)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from osteolens.cli.main import app
from osteolens.errors import ConfigError
from osteolens.landmarks.evaluate import evaluate_tables, read_tables
from osteolens.landmarks.names import VERTEBRAE
from osteolens.landmarks.relabel import shift_levels
from osteolens.morphometry.vertebra import CORNERS
from tests.landmarks.conftest import synthetic_spine


def _table(image: str, corners: np.ndarray, names) -> pd.DataFrame:
    return pd.DataFrame([{"image": image, "vertebra": name, "corner": corner, "point_index": 4 * k + c,
                          "x": corners[k, c, 0], "y": corners[k, c, 1]}
                         for k, name in enumerate(names) for c, corner in enumerate(CORNERS)])


def test_relabelling_a_set_counted_one_level_cranial_restores_its_levels(tmp_path):
    """A detection whose "T1" sits on C7: every corner right, every name one level too low."""
    image, truth = synthetic_spine(np.random.default_rng(4), (1024, 400), 18)  # C7 + T1-L5
    names = ["C7", *VERTEBRAE]
    (tmp_path / "images").mkdir()
    import cv2

    cv2.imwrite(str(tmp_path / "images" / "s.png"), (image * 255).astype(np.uint8))
    _table("images/s.png", truth[1:], VERTEBRAE).to_csv(tmp_path / "truth.csv", index=False)  # C7 not annotated
    _table("images/s.png", truth[:17], VERTEBRAE).to_csv(tmp_path / "pred.csv", index=False)  # C7-L4 named T1-L5
    before = evaluate_tables(read_tables(tmp_path / "pred.csv", tmp_path / "truth.csv"), n_bootstrap=0)
    assert before.per_image["level_shift"].iloc[0] == -1 and before.per_image["mre_px"].iloc[0] > 20

    result = CliRunner().invoke(app, ["landmarks", "relabel", str(tmp_path / "pred.csv"), "--image", "images/s.png",
                                      "--shift", "-1"])
    assert result.exit_code == 0, result.output
    fixed = pd.read_csv(tmp_path / "pred.relabelled.csv")
    assert fixed["vertebra"].unique().tolist() == names[:17]
    assert fixed["point_index"].tolist() == list(range(68))
    after = evaluate_tables(read_tables(tmp_path / "pred.relabelled.csv", tmp_path / "truth.csv"), n_bootstrap=0)
    assert after.per_image["level_shift"].iloc[0] == 0
    assert after.per_image["mre_px"].iloc[0] == pytest.approx(0.0, abs=1e-6)  # T1-L4 exact; C7 ignored, L5 missing
    # still in the headline point metrics; no Cobb comparison without L5
    assert after.summary["n_images"] == 1 and after.summary["mre_px"] == pytest.approx(0.0, abs=1e-6)
    assert after.summary["n_images_cobb"] == 0 and np.isnan(after.summary["cobb_smape"])


def test_shift_levels_leaves_other_images_and_refuses_what_it_cannot_do():
    table = pd.concat([_table("a", np.zeros((2, 4, 2)), ["L4", "L5"]), _table("b", np.ones((2, 4, 2)), ["T1", "T2"])])
    moved = shift_levels(table, "a", 1)
    assert moved["vertebra"].tolist()[:8:4] == ["L5", "S1"] and moved["vertebra"].tolist()[8::4] == ["T1", "T2"]
    with pytest.raises(ConfigError, match="'c' is not an image"):
        shift_levels(table, "c", 1)
    with pytest.raises(ConfigError, match="leaves C1-S5"):
        shift_levels(table, "b", -20)
    with pytest.raises(ConfigError, match="'V1' of 'v' is not a level"):
        shift_levels(_table("v", np.zeros((1, 4, 2)), ["V1"]), "v", 1)


def test_cli_names_the_table_when_the_image_is_not_in_it(tmp_path):
    _table("a", np.zeros((1, 4, 2)), ["T1"]).to_csv(tmp_path / "t.csv", index=False)
    result = CliRunner().invoke(app, ["landmarks", "relabel", str(tmp_path / "t.csv"), "--image", "b", "--shift", "1"])
    assert isinstance(result.exception, ConfigError)
    assert "'b' is not an image of" in str(result.exception) and "t.csv" in str(result.exception)
    assert not (tmp_path / "t.relabelled.csv").exists()
