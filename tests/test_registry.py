from __future__ import annotations

import pytest

from osteolens.errors import TransformError
from osteolens.registry import Registry


def test_registry_refuses_a_clash_and_lists_names():
    table: Registry[object] = Registry("transform", TransformError)
    first, second = object(), object()
    assert table.add("b", first) is first
    assert table.add("b", first) is first  # the same object again is fine
    table.add("a", second)
    with pytest.raises(TransformError, match="transform name 'b' is already registered"):
        table.add("b", second)
    assert table.names() == ["a", "b"] and "a" in table and table.get("c") is None
