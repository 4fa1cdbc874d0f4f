"""Registries: a name -> builder table whose builders are imported on first use.

The harness's extension points (models, forward processes, their losses, samplers) are
registries: the schema checks a name against `names()` without importing torch or any model,
and a build imports the module that defines the builder. An entry is added in the table or,
from any module imported before the config is validated, with `register` as a decorator.

A registry created with the config `key` that names its entries (the model kinds) also takes
an import path "package.module:Name" in place of a registered name: the schema checks only its
form, and a build imports it, an import error naming the key and the path, and builds with
the registry's `adapter` (harness.models.imported checks the class's interface).
"""

from __future__ import annotations

import functools
import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BeforeValidator

from harness.errors import HarnessError

IMPORT_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*")


@dataclass
class _Entry:
    target: str | Callable[..., Any]  # "module:function", or the builder itself
    description: str


def is_import_path(name: str) -> bool:
    """Whether a name is an import path ("package.module:Name") rather than a registered name."""
    return ":" in name


def import_object(path: str, key: str) -> Any:
    """The object "package.module:Name" names; a HarnessError naming `key` and the path if the
    module does not import or has no such name."""
    module_name, _, name = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise HarnessError(f"{key}: cannot import module {module_name!r} of {path!r} ({error}); "
                           "it must be importable from the working directory or PYTHONPATH"
                           ) from error
    if not hasattr(module, name):
        raise HarnessError(f"{key}: module {module_name!r} ({module.__file__}) has no {name!r} "
                           f"(from {path!r})")
    return getattr(module, name)


def _resolve(target: str | Callable[..., Any]) -> Callable[..., Any]:
    if isinstance(target, str):
        module, function = target.split(":")
        return getattr(importlib.import_module(module), function)
    return target


class Registry:
    """Name -> builder, imported on first use.

    With `key`, the config key that names an entry, an import path is a name too: its builder
    is `adapter(the imported object, the path, *arguments)` ("module:function", imported on
    first use), or without an adapter the imported object itself.
    """

    def __init__(self, what: str, entries: dict[str, tuple[str, str]], key: str | None = None,
                 adapter: str | None = None) -> None:
        self.what = what
        self.key, self.adapter = key, adapter
        self._entries = {name: _Entry(target, description)
                         for name, (target, description) in entries.items()}

    def names(self) -> list[str]:
        return list(self._entries)

    def describe(self) -> str:
        text = "; ".join(f"{name}: {entry.description}" for name, entry in self._entries.items())
        return text + ("; or your own class as package.module:ClassName" if self.key else "")

    def register(self, name: str, description: str = ""
                 ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def add(builder: Callable[..., Any]) -> Callable[..., Any]:
            self._entries[name] = _Entry(builder, description or (builder.__doc__ or name))
            return builder
        return add

    def accepts(self, name: str) -> bool:
        """A registered name, or (with a key) a well-formed import path; nothing is imported."""
        return name in self._entries or (self.key is not None and IMPORT_PATH.fullmatch(name)
                                         is not None)

    def builder(self, name: str) -> Callable[..., Any]:
        """The registered builder of `name`, or that of an import path (see the class)."""
        if name not in self._entries:
            if self.key is not None and is_import_path(name):
                target = import_object(name, self.key)
                return target if self.adapter is None else functools.partial(
                    _resolve(self.adapter), target, name)
            raise KeyError(f"unknown {self.what} {name!r}; known: {', '.join(self._entries)}")
        entry = self._entries[name]
        entry.target = _resolve(entry.target)
        return entry.target


def check_name(registry: Registry, name: object) -> object:
    """A registered name (or, where the registry takes them, an import path) passes; another
    is a ValueError naming the known ones."""
    if not isinstance(name, str) or registry.accepts(name):
        return name
    if registry.key is not None and is_import_path(name):
        raise ValueError(f"{name!r} is not an import path of the form package.module:ClassName")
    raise ValueError(f"unknown {registry.what} {name!r}; known: {registry.describe()}")


def registered(registry: Registry) -> Any:
    """The type of a config field that names an entry of `registry`, checked on validation."""
    return Annotated[str, BeforeValidator(lambda name: check_name(registry, name))]
