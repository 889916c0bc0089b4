"""Task losses and output-to-probability maps, checked against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from osteolens.errors import ModelError
from osteolens.models import tabular, tasks


def test_num_outputs():
    assert tasks.num_outputs("binary", 2) == 1
    assert tasks.num_outputs("multiclass", 3) == 3
    assert tasks.num_outputs("ordinal", 3) == 2
    assert tasks.num_outputs("regression") == 1
    with pytest.raises(ModelError):
        tasks.num_outputs("binary", 3)


def test_ordinal_probabilities_from_cumulative_logits():
    # P(y>0) = sigmoid(0) = 0.5, P(y>1) = sigmoid(-ln 3) = 0.25 -> P = [0.5, 0.25, 0.25]
    out = torch.tensor([[0.0, -math.log(3.0)]])
    probs = tasks.probabilities("ordinal", out)
    assert torch.allclose(probs, torch.tensor([[0.5, 0.25, 0.25]]))
    # Unordered logits are made rank-consistent: no negative probability.
    probs = tasks.probabilities("ordinal", torch.tensor([[-2.0, 3.0]]))
    assert (probs >= 0).all() and torch.allclose(probs.sum(1), torch.ones(1))


def test_ordinal_loss_is_sum_of_threshold_bces():
    out = torch.tensor([[0.3, -0.7]])
    y = torch.tensor([1])  # levels [1, 0]
    expected = -math.log(1 / (1 + math.exp(-0.3))) - math.log(1 - 1 / (1 + math.exp(0.7)))
    assert tasks.loss("ordinal", out, y).item() == pytest.approx(expected, rel=1e-6)


def test_class_weighted_loss_matches_torch_weighted_cross_entropy():
    out = torch.tensor([[2.0, 0.0, -1.0], [0.1, 0.2, 0.3], [0.0, 1.0, 0.0]])
    y = torch.tensor([0, 2, 2])
    w = torch.tensor(tasks.class_weights(y.numpy(), 3), dtype=torch.float32)
    assert w.tolist() == pytest.approx([1.5, 0.0, 0.75])
    ref = torch.nn.functional.cross_entropy(out, y, weight=w)
    assert tasks.loss("multiclass", out, y, w).item() == pytest.approx(ref.item(), rel=1e-6)


def test_regression_destandardises():
    values = tasks.regression_values(torch.tensor([[1.0], [-0.5]]), {"mean": 100.0, "std": 20.0})
    assert values.tolist() == [120.0, 90.0]


def test_tabular_encoding():
    import pandas as pd

    frame = pd.DataFrame({"sex": ["M", "F", None, "male"], "age": [50.0, 70.0, 60.0, np.nan]})
    scaling = tabular.fit_scaling(frame, ["sex", "age"])
    assert scaling["age"]["mean"] == pytest.approx(60.0)
    assert scaling["age"]["std"] == pytest.approx(math.sqrt(200 / 3))
    x = tabular.encode(frame, ["sex", "age"], scaling)
    assert x[:, 0].tolist() == [1.0, 0.0, 0.5, 1.0]
    assert x[:, 1] == pytest.approx([-10 / math.sqrt(200 / 3), 10 / math.sqrt(200 / 3), 0.0, 0.0])
    with pytest.raises(ModelError, match="bmi"):
        tabular.encode(frame, ["bmi"], scaling)
