"""Image models: ``create_model`` over timm backbones and osteolens' own networks.

``osteolens.models.classic`` (scikit-learn pipelines for radiomics) is a separate module,
imported on its own so that using the CNNs never imports it.
"""

from __future__ import annotations

from osteolens.models.net import CoralOutput, OsteoNet, create_model
from osteolens.models.registry import Backbone, register_model, registered_models
from osteolens.models.tasks import TASKS, num_outputs

__all__ = [
    "TASKS",
    "Backbone",
    "CoralOutput",
    "OsteoNet",
    "create_model",
    "num_outputs",
    "register_model",
    "registered_models",
]
