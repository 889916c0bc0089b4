"""Start an image + covariate network from the covariates-only model.

With ``fusion: offset`` an :class:`~osteolens.models.net.OsteoNet` outputs
``head(image features) + C x`` where ``x`` are the encoded covariates and ``C`` the
covariate path. :func:`fit_covariate_offset` sets the image head's last weights to zero and
fits ``C`` together with the output biases ``b`` by minimising the task's own training loss
(the same class weights) on the covariates alone::

    minimise  loss(task, b + C x, y) + (l2 / 2) ||C||^2        (L-BFGS, full batch)

so the untrained network *is* the covariates-only model (a logistic, multinomial, CORAL
or least-squares model of the covariates), and gradient descent can only move away from it
where the image lowers the loss. The training loop then keeps whichever of the two, the
covariates-only start or the trained network, has the lower inner-validation loss.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from osteolens.errors import ModelError
from osteolens.models import tasks
from osteolens.models.net import CoralOutput, OsteoNet


def output_layer(net: OsteoNet) -> tuple[nn.Linear, nn.Parameter]:
    """The head's last linear map (the CORAL score for ordinal heads) and the output biases."""
    last = net.head[-1]
    if isinstance(last, CoralOutput):
        return last.score, last.bias
    return last, last.bias


def fit_covariate_offset(
    net: OsteoNet,
    tabular: np.ndarray,
    targets: np.ndarray,
    class_weights: np.ndarray | None = None,
    l2: float = 1e-3,
    max_iter: int = 200,
) -> float:
    """Make ``net`` equal to the covariates-only model fitted on ``(tabular, targets)``.

    Args:
        net: an ``OsteoNet`` built with covariates and ``fusion="offset"``.
        tabular: encoded covariates ``[N, n]`` (``osteolens.models.tabular.encode``).
        targets: class indices, or the standardised target for regression.
        class_weights: per-class loss weights, as in training.
        l2: ridge penalty on the covariate weights (keeps separable data finite).
        max_iter: L-BFGS iterations.

    Returns:
        The final training loss of the covariates-only model (without the penalty).

    Raises:
        ModelError: the network has no covariate path.
    """
    if net.covariate_path is None:
        raise ModelError("fit_covariate_offset needs a network built with covariates and fusion='offset'.")
    task = net.config["task"]
    layer, bias = output_layer(net)
    x = torch.as_tensor(np.asarray(tabular, dtype=np.float32))
    y = torch.as_tensor(np.array(targets))
    w = None if class_weights is None else torch.as_tensor(class_weights, dtype=torch.float32)
    path = net.covariate_path
    with torch.no_grad():
        layer.weight.zero_()
        path.weight.zero_()
        if task == "regression":
            bias.fill_(float(y.float().mean()))
    params = [path.weight, bias]
    optimiser = torch.optim.LBFGS(params, lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe",
                                  tolerance_grad=1e-9, tolerance_change=1e-12)

    def outputs() -> torch.Tensor:
        return bias[None, :] + path(x)

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        value = tasks.loss(task, outputs(), y, w) + 0.5 * l2 * path.weight.pow(2).sum()
        value.backward()
        return value

    optimiser.step(closure)
    with torch.no_grad():
        return float(tasks.loss(task, outputs(), y, w))
