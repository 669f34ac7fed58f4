"""The explicit registry of node types: built-ins, decorated classes, and entry-point plugins."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from importlib.metadata import entry_points
from typing import Any, TypeVar

from workflow_engine.errors import WorkflowEngineError
from workflow_engine.nodes.base import NodeType

ENTRY_POINT_GROUP = "workflow_engine.nodes"

T = TypeVar("T", bound=type[NodeType[Any]])


class PluginError(WorkflowEngineError):
    """A node-type plugin could not be loaded or registered."""


class NodeRegistry:
    """Maps a type name to one node-type instance. No globals: build one and pass it around.

    ``registry.register`` works as a class decorator::

        registry = NodeRegistry.with_builtins()

        @registry.register
        class Greet(NodeType[GreetInputs]): ...
    """

    def __init__(self, types: Iterable[type[NodeType[Any]]] = ()) -> None:
        self._types: dict[str, NodeType[Any]] = {}
        for cls in types:
            self.register(cls)

    def register(self, cls: T, *, replace: bool = False) -> T:
        name = getattr(cls, "type_name", None)
        if not isinstance(name, str) or not name:
            raise PluginError(f"{cls!r} has no type_name")
        if not isinstance(cls, type) or not issubclass(cls, NodeType):
            raise PluginError(f"{cls!r} is not a NodeType subclass")
        if name in self._types and not replace:
            raise PluginError(f"node type {name!r} is already registered")
        self._types[name] = cls()
        return cls

    def get(self, name: str) -> NodeType[Any] | None:
        return self._types.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def __iter__(self) -> Iterator[NodeType[Any]]:
        return iter(self._types.values())

    def names(self) -> list[str]:
        return sorted(self._types)

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> None:
        """Register every class published under the entry-point ``group`` (an entry point may
        publish one class, or a tuple of them: a family, like FastGPT's node types)."""
        for ep in entry_points(group=group):
            try:
                published = ep.load()
            except Exception as exc:
                raise PluginError(f"cannot load node type plugin {ep.value!r}: {exc}") from exc
            for cls in published if isinstance(published, tuple | list) else (published,):
                self.register(cls)

    @classmethod
    def with_builtins(cls) -> NodeRegistry:
        from workflow_engine.nodes.builtin import BUILTIN_TYPES

        return cls(BUILTIN_TYPES)

    @classmethod
    def default(cls) -> NodeRegistry:
        """Built-ins plus installed plugins."""
        registry = cls.with_builtins()
        registry.load_entry_points()
        return registry
