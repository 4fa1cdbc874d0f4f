"""Data manifests: the schema, loading and validation, the source registry and data errors.

A source is `fn(manifest, manifest_path)` returning the (train, eval) arrays, or with
`chunked=True` yielding `(split, images, labels)` chunks, every train image before any eval
image, so that a split larger than memory never has to be whole at once (harness.data.store
writes the chunks to disk). Its `stamp` says what changes when the local data it reads changes.

Class labels: a source whose data has them registers `classes(manifest, manifest_path)`, the
class names (empty when this manifest's data is unlabeled); its labels are then int64 class
indices aligned with the images: the third item of every chunk, or with a non-chunked source a
returned `(train, eval, train_labels, eval_labels)`. An unlabeled source's chunks carry None.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from harness.errors import ConfigError, DataError

Split = tuple[np.ndarray, np.ndarray]
LabeledSplit = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # + train, eval labels
# Consecutive images of split "train" or "eval" and their int64 labels (None: unlabeled source).
Chunk = tuple[str, np.ndarray, np.ndarray | None]
SourceFn = Callable[["Manifest", Path], Split | LabeledSplit]
ChunkedSourceFn = Callable[["Manifest", Path], Iterator[Chunk]]
StampFn = Callable[["Manifest", Path], str]
ClassesFn = Callable[["Manifest", Path], tuple[str, ...]]
_Fn = TypeVar("_Fn", SourceFn, ChunkedSourceFn)
_Items = TypeVar("_Items", np.ndarray, list[Path])


class StrictModel(BaseModel):
    """Base of the manifest models: unknown keys and type coercion are errors."""

    model_config = ConfigDict(extra="forbid", strict=True)


class Splits(StrictModel):
    """How many images each split holds."""

    train: int = Field(ge=1)
    eval: int = Field(ge=0)


class Manifest(StrictModel):
    """One data manifest YAML; `options` are checked by the source's own options model."""

    name: str = Field(min_length=1)
    source: str
    resolution: int = Field(ge=1)
    splits: Splits
    seed: int = Field(0, ge=0)
    options: dict[str, Any] = Field(default_factory=dict)
    path: str | None = None
    sha256: str | None = None
    obtain: str | None = None
    description: str = ""

    @field_validator("source")
    @classmethod
    def _known_source(cls, value: str) -> str:
        if value not in _SOURCES:
            raise ValueError(f"unknown source {value!r}; registered: {', '.join(sorted(_SOURCES))}")
        return value

    @field_validator("sha256")
    @classmethod
    def _hex_digest(cls, value: str | None) -> str | None:
        if value is not None:
            value = value.lower()
            if len(value) != 64 or any(ch not in "0123456789abcdef" for ch in value):
                raise ValueError("expected 64 hexadecimal digits")
        return value


# --------------------------------------------------------------------------- source registry


@dataclass(frozen=True)
class Source:
    """A registered data source: its loader, options model and what it needs from the manifest."""

    name: str
    load: SourceFn | ChunkedSourceFn
    options: type[BaseModel]
    needs_path: bool
    single_file: bool
    chunked: bool = False
    stamp: StampFn | None = None
    classes: ClassesFn | None = None

    def chunks(self, manifest: Manifest, manifest_path: Path) -> Iterator[Chunk]:
        """The manifest's images as `(split, images, labels)` chunks: all of train, then all of
        eval; labels are None for an unlabeled source."""
        if self.chunked:
            yield from self.load(manifest, manifest_path)
            return
        result = self.load(manifest, manifest_path)
        train_labels = eval_labels = None
        if len(result) == 4:
            train, eval_, train_labels, eval_labels = result
        else:
            train, eval_ = result
        yield "train", train, train_labels
        yield "eval", eval_, eval_labels

    def class_names(self, manifest: Manifest, manifest_path: Path) -> tuple[str, ...]:
        """The class names of the manifest's data; empty when it is unlabeled."""
        return self.classes(manifest, manifest_path) if self.classes is not None else ()

    def data_stamp(self, manifest: Manifest, manifest_path: Path) -> str | None:
        """What changes when the local data the manifest reads changes; None if it reads none."""
        if self.stamp is not None:
            return self.stamp(manifest, manifest_path)
        return path_stamp(data_path(manifest, manifest_path)) if self.needs_path else None


class NoOptions(StrictModel):
    """Options model of sources that take none."""


_SOURCES: dict[str, Source] = {}


def register_source(
    name: str,
    *,
    options: type[BaseModel] = NoOptions,
    needs_path: bool = False,
    single_file: bool = False,
    chunked: bool = False,
    stamp: StampFn | None = None,
    classes: ClassesFn | None = None,
) -> Callable[[_Fn], _Fn]:
    """Register `fn(manifest, manifest_path) -> (train, eval)` as the source called `name`;
    with `chunked`, `fn` yields `(split, images, labels)` chunks instead (see the module
    docstring). `stamp(manifest, manifest_path)` defaults to `path_stamp` of the manifest's
    `path`; `classes(manifest, manifest_path)` names the classes of a labeled source."""

    def decorate(fn: _Fn) -> _Fn:
        if name in _SOURCES:
            raise ValueError(f"data source {name!r} is already registered")
        _SOURCES[name] = Source(name, fn, options, needs_path, single_file, chunked, stamp,
                                classes)
        return fn

    return decorate


def get_source(name: str) -> Source:
    """The registered source called `name` (a validated manifest's `source` always is one)."""
    return _SOURCES[name]


def source_options(manifest: Manifest, manifest_path: str | Path) -> Any:
    """The manifest's `options` validated by its source's options model."""
    model = _SOURCES[manifest.source].options
    try:
        return model.model_validate(manifest.options)
    except ValidationError as exc:
        raise _config_error(exc, Path(manifest_path), ("options",), model) from None


# --------------------------------------------------------------------------- manifest loading


def load_manifest(path: str | Path) -> Manifest:
    """Parse and validate a manifest YAML; every problem is a ConfigError naming file and key."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(path, "", "manifest not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(path, "", f"not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(path, "", "expected a mapping of manifest keys at the top level")
    try:
        manifest = Manifest.model_validate(raw)
    except ValidationError as exc:
        raise _config_error(exc, path, (), Manifest) from None
    source_options(manifest, path)
    _check_source_fields(manifest, path)
    return manifest


def _check_source_fields(manifest: Manifest, path: Path) -> None:
    source = _SOURCES[manifest.source]
    if source.needs_path and manifest.path is None:
        raise ConfigError(path, "path", f"source {source.name!r} needs the path of a local copy")
    if not source.needs_path and manifest.path is not None:
        raise ConfigError(path, "path", f"source {source.name!r} reads no local copy; remove it")
    if manifest.sha256 is not None and not source.single_file:
        raise ConfigError(path, "sha256", f"source {source.name!r} is not a single file to hash")


def _config_error(
    exc: ValidationError, file: Path, prefix: tuple[Any, ...], model: type[BaseModel]
) -> ConfigError:
    problems = [
        (".".join(str(part) for part in (*prefix, *err["loc"])), _describe_error(err, model))
        for err in exc.errors()
    ]
    key, message = problems[0]
    if len(problems) > 1:
        message += "; also " + "; ".join(f"{k or '(top)'}: {m}" for k, m in problems[1:])
    return ConfigError(file, key, message)


def _describe_error(err: Any, model: type[BaseModel]) -> str:
    kind, loc = err["type"], tuple(err["loc"])
    if kind == "extra_forbidden":
        allowed = _allowed_keys(model, loc[:-1])
        return "unknown key" + (f" (allowed: {', '.join(allowed)})" if allowed else "")
    if kind == "missing":
        return "required key is missing"
    message = str(err["msg"]).removeprefix("Value error, ")
    if kind.endswith("_type") or kind.endswith("_parsing"):
        message += f" (got {err['input']!r:.60})"
    return message


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    for part in loc:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        sub = field.annotation if field is not None else None
        if not (isinstance(sub, type) and issubclass(sub, BaseModel)):
            return []
        model = sub
    return list(model.model_fields)


# --------------------------------------------------------------------------- data files and errors


def resolve_path(value: str, manifest_path: str | Path) -> Path:
    """Expand `~` and `$VARS` in a manifest path; relative paths start at the manifest's folder."""
    path = Path(os.path.expanduser(os.path.expandvars(value)))
    return path if path.is_absolute() else Path(manifest_path).parent / path


def data_path(manifest: Manifest, manifest_path: Path) -> Path:
    """The resolved `path` of a manifest whose source needs one."""
    assert manifest.path is not None  # load_manifest guarantees it for sources that need it
    return resolve_path(manifest.path, manifest_path)


def files_stamp(root: Path, files: Iterable[Path]) -> str:
    """sha256 over `root` and the (path relative to it, size, mtime) of each file: changes when
    any of them is edited, added, removed or renamed, without reading a byte of them."""
    digest = hashlib.sha256(f"{root.resolve()}\n".encode())
    for file in files:
        stat = file.stat()
        digest.update(f"{file.relative_to(root).as_posix()}\t{stat.st_size}\t"
                      f"{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def path_stamp(path: Path) -> str:
    """`files_stamp` of a file, or of every file under a folder; "missing" if there is none."""
    if path.is_file():
        return files_stamp(path.parent, [path])
    if path.is_dir():
        return files_stamp(path, sorted(p for p in path.rglob("*") if p.is_file()))
    return "missing"


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def data_error(
    file: str | Path, problem: str, manifest: Manifest, manifest_path: str | Path
) -> DataError:
    """A DataError naming the file, the manifest and how to obtain the data."""
    hint = ""
    if "$" in str(file):
        hint = " (an environment variable in the path is not set)"
    how = manifest.obtain.strip() if manifest.obtain else "the manifest has no `obtain` text"
    return DataError(f"{file}: {problem}{hint} [manifest {manifest_path}]. To obtain it: {how}")


def too_few(
    file: Path, held: int, count: int, key: str, manifest: Manifest, manifest_path: Path,
    noun: str = "images",
) -> DataError:
    """The DataError of a `file` that holds `held` items where manifest key `key` asks `count`."""
    problem = f"holds {held} {noun} but {key} asks for {count}"
    return data_error(file, problem, manifest, manifest_path)


def take(
    items: _Items,
    count: int,
    key: str,
    file: Path,
    manifest: Manifest,
    manifest_path: Path,
    noun: str = "images",
) -> _Items:
    """The first `count` items; a DataError if `file` holds fewer than manifest key `key` asks."""
    if len(items) < count:
        raise too_few(file, len(items), count, key, manifest, manifest_path, noun)
    return items[:count]
