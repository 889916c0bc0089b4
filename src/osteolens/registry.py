"""One name -> object table, shared by the transform, feature-family and model registries.

Each package keeps its own decorator (which may also stamp ``cls.name``) and its own error
type; this class only holds the table and refuses a name registered twice.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from osteolens.errors import OsteolensError

T = TypeVar("T")


class Registry(Generic[T]):
    """Names to registered objects.

    Args:
        kind: what is registered, for messages (``"transform"``, ``"model"``, ...).
        error: builds the exception raised on a clash from its message.
    """

    def __init__(self, kind: str, error: Callable[[str], OsteolensError]) -> None:
        self.kind = kind
        self.error = error
        self._items: dict[str, T] = {}

    def add(self, name: str, item: T) -> T:
        """Register ``item`` under ``name``; re-registering the same object is a no-op."""
        existing = self._items.get(name)
        if existing is not None and existing is not item:
            raise self.error(f"{self.kind} name {name!r} is already registered; choose another name.")
        self._items[name] = item
        return item

    def get(self, name: str) -> T | None:
        """The object registered under ``name``, or None."""
        return self._items.get(name)

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items
