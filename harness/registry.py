"""Registries: a name -> builder table whose builders are imported on first use.

The harness's extension points (models, forward processes, their losses, samplers) are
registries: the schema checks a name against `names()` without importing torch or any model,
and a build imports the module that defines the builder. An entry is added in the table or,
from any module imported before the config is validated, with `register` as a decorator.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BeforeValidator


@dataclass
class _Entry:
    target: str | Callable[..., Any]  # "module:function", or the builder itself
    description: str


class Registry:
    """Name -> builder, imported on first use."""

    def __init__(self, what: str, entries: dict[str, tuple[str, str]]) -> None:
        self.what = what
        self._entries = {name: _Entry(target, description)
                         for name, (target, description) in entries.items()}

    def names(self) -> list[str]:
        return list(self._entries)

    def describe(self) -> str:
        return "; ".join(f"{name}: {entry.description}" for name, entry in self._entries.items())

    def register(self, name: str, description: str = ""
                 ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def add(builder: Callable[..., Any]) -> Callable[..., Any]:
            self._entries[name] = _Entry(builder, description or (builder.__doc__ or name))
            return builder
        return add

    def builder(self, name: str) -> Callable[..., Any]:
        if name not in self._entries:
            raise KeyError(f"unknown {self.what} {name!r}; known: {', '.join(self._entries)}")
        entry = self._entries[name]
        if isinstance(entry.target, str):
            module, function = entry.target.split(":")
            entry.target = getattr(importlib.import_module(module), function)
        return entry.target


def check_name(registry: Registry, name: object) -> object:
    """A registered name passes; another is a ValueError naming the known ones."""
    if isinstance(name, str) and name not in registry.names():
        raise ValueError(f"unknown {registry.what} {name!r}; known: {registry.describe()}")
    return name


def registered(registry: Registry) -> Any:
    """The type of a config field that names an entry of `registry`, checked on validation."""
    return Annotated[str, BeforeValidator(lambda name: check_name(registry, name))]
