"""Fixtures of the inference tests: tiny random-init models from osteolens.models."""

from __future__ import annotations

import pytest


@pytest.fixture
def create_model():
    """``osteolens.models.create_model``; tests build tiny simple_cnn or resnet10t networks."""
    from osteolens.models import create_model

    return create_model
