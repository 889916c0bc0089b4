"""ONNX export: parity with torch within 1e-4, dynamic batch, covariate input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from osteolens.errors import ModelError
from osteolens.inference.runtime import OnnxBackend, TorchBackend, export_checked, parity


@pytest.mark.parametrize("tabular", [(), ("sex", "age")])
def test_onnx_matches_torch(create_model, tabular):
    torch.manual_seed(0)
    models = [create_model("simple_cnn", "multiclass", 3, tabular=list(tabular), conv_layers=2, filters=4,
                           dense_units=8).eval() for _ in range(2)]
    graph, difference = export_checked(models, (40, 40), 1, len(tabular))
    assert difference <= 1e-4
    rng = np.random.default_rng(1)
    images = rng.random((5, 1, 40, 40), dtype=np.float32)  # batch 5: the batch axis is dynamic
    covariates = rng.standard_normal((5, len(tabular))).astype(np.float32) if tabular else None
    onnx_out = OnnxBackend(graph, threads=1)(images, covariates)
    torch_out = TorchBackend(models, bool(tabular))(images, covariates)
    assert onnx_out.shape == (2, 5, 3)
    assert np.abs(onnx_out - torch_out).max() <= 1e-4


def test_parity_detects_a_different_graph(create_model):
    torch.manual_seed(0)
    a = create_model("simple_cnn", "binary", 1, conv_layers=2, filters=4, dense_units=8).eval()
    b = create_model("simple_cnn", "binary", 1, conv_layers=2, filters=4, dense_units=8).eval()
    graph, _ = export_checked([a], (32, 32))
    assert parity([b], graph, (32, 32)) > 1e-4


def test_unloadable_graph_is_a_model_error():
    with pytest.raises(ModelError, match="ONNX Runtime cannot load"):
        OnnxBackend(b"not an onnx graph")
