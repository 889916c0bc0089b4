"""Covariate fusion by offset: the untrained network is the covariates-only model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression, Ridge

from osteolens.errors import ModelError
from osteolens.evaluation.metrics import predicted_classes
from osteolens.models import create_model
from osteolens.models.fusion import fit_covariate_offset

TINY = {"conv_layers": 1, "filters": 2, "dense_units": 4}


def _covariates(n: int = 120, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.integers(0, 2, n), rng.normal(0, 1, n)]).astype(np.float32)


def test_binary_offset_equals_penalised_logistic_regression():
    x = _covariates()
    rng = np.random.default_rng(1)
    y = (rng.random(len(x)) < 1 / (1 + np.exp(-(1.5 * x[:, 1] - 0.7 * x[:, 0] + 0.3)))).astype(np.int64)
    net = create_model("simple_cnn", "binary", 1, tabular=["sex", "age"], **TINY)
    l2 = 1e-2
    fit_covariate_offset(net, x, y, l2=l2)
    # sklearn minimises C * sum(loss) + ||w||^2 / 2, i.e. mean(loss) + ||w||^2 / (2 C N).
    reference = LogisticRegression(C=1 / (l2 * len(x)), tol=1e-10, max_iter=1000).fit(x, y)
    np.testing.assert_allclose(net.covariate_path.weight.detach().numpy()[0], reference.coef_[0], atol=1e-3)
    assert float(net.head[-1].bias.detach()) == pytest.approx(float(reference.intercept_[0]), abs=1e-3)


def test_regression_offset_equals_ridge():
    x = _covariates(seed=3)
    y = (0.8 * x[:, 1] - 0.4 * x[:, 0] + np.random.default_rng(4).normal(0, 0.3, len(x))).astype(np.float32)
    net = create_model("simple_cnn", "regression", 1, tabular=["sex", "age"], **TINY)
    l2 = 1e-2
    fit_covariate_offset(net, x, y, l2=l2)
    # Ridge minimises ||y - Xw - b||^2 + alpha ||w||^2 = N (mse + (alpha / N) ||w||^2).
    reference = Ridge(alpha=l2 * len(x) / 2).fit(x, y)
    np.testing.assert_allclose(net.covariate_path.weight.detach().numpy()[0], reference.coef_, atol=1e-4)
    assert float(net.head[-1].bias.detach()) == pytest.approx(float(reference.intercept_), abs=1e-4)


@pytest.mark.parametrize("task,outputs", [("binary", 1), ("multiclass", 3), ("ordinal", 2), ("regression", 1)])
def test_untrained_network_ignores_the_image(task, outputs):
    torch.manual_seed(0)
    x = _covariates(60)
    y = np.arange(60) % 3 if outputs > 1 else (np.arange(60) % 2 if task == "binary" else x[:, 1])
    net = create_model("simple_cnn", task, outputs, tabular=["sex", "age"], head_hidden=[4], **TINY).eval()
    fit_covariate_offset(net, x, y)
    tab = torch.from_numpy(x[:4])
    with torch.no_grad():
        first, second = net(torch.rand(4, 1, 16, 16), tab), net(torch.rand(4, 1, 16, 16), tab)
    torch.testing.assert_close(first, second)
    assert net.head[-1].weight.abs().sum() == 0 if task != "ordinal" else net.head[-1].score.weight.abs().sum() == 0


def test_ordinal_offset_predicts_a_well_separated_middle_class():
    age = np.repeat([-1.5, 0.0, 1.5], 30).astype(np.float32) + np.random.default_rng(5).normal(0, 0.2, 90).astype(np.float32)
    x = np.column_stack([np.zeros(90, np.float32), age])
    y = np.repeat([0, 1, 2], 30)
    net = create_model("simple_cnn", "ordinal", 2, tabular=["sex", "age"], **TINY).eval()
    fit_covariate_offset(net, x, y)
    from osteolens.models import tasks

    with torch.no_grad():
        probs = tasks.probabilities("ordinal", net(torch.zeros(90, 1, 16, 16), torch.from_numpy(x))).numpy()
    decided = predicted_classes(probs, cumulative=True)
    assert set(decided.tolist()) == {0, 1, 2}
    assert (decided == y).mean() > 0.95


def test_cumulative_rule_counts_exceedances_not_the_argmax():
    # P(y > 0) = 0.6 and P(y > 1) = 0.4: the median class is the middle one, though it is the least probable.
    probs = np.array([[0.4, 0.2, 0.4], [0.7, 0.2, 0.1], [0.05, 0.15, 0.8], [0.45, 0.1, 0.45]])
    assert predicted_classes(probs, cumulative=True).tolist() == [1, 0, 2, 1]
    assert predicted_classes(probs).tolist() == [0, 0, 2, 0]


def test_offset_needs_covariates_and_a_known_fusion():
    net = create_model("simple_cnn", "binary", 1, **TINY)
    with pytest.raises(ModelError, match="covariates"):
        fit_covariate_offset(net, np.zeros((2, 0), np.float32), np.array([0, 1]))
    with pytest.raises(ModelError, match="fusion"):
        create_model("simple_cnn", "binary", 1, tabular=["age"], fusion="sum", **TINY)
    concat = create_model("simple_cnn", "binary", 1, tabular=["age"], fusion="concat", **TINY)
    assert concat.covariate_path is None and concat.head[-1].in_features == 4 + 1
