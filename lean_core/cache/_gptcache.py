"""Import GPTCache (0.1.44) without its two hazards: pickles loaded from disk and pip at run time.

GPTCache is used here only as a baseline to compare against; it is not a dependency of the cache.
Two of its behaviours are unacceptable in a library:

* ``gptcache/core.py`` declares ``Cache.init(..., data_manager=get_data_manager())``: the default
  is evaluated when the module is imported and builds a ``MapDataManager("data_map.txt")``, whose
  ``init`` runs ``pickle.load`` on that file *in the current directory*. Any ``data_map.txt`` there
  runs code on ``import gptcache``. ``MapDataManager.flush`` writes such pickles back. That is the
  only ``pickle`` use in the package (``gptcache/manager/data_manager.py``).
* ``gptcache/utils/__init__.py`` checks optional dependencies with ``_check_library``, which calls
  ``gptcache.utils.dependency_control.prompt_install``: ``subprocess.check_call("pip install -q
  ...", shell=True)``. Store modules call it on import (``import_faiss()`` in the faiss store,
  ``import_sqlalchemy()`` in the SQL store, ...).

:func:`import_gptcache` installs a one-shot import hook that patches those modules the moment
their code has run, before anything else in GPTCache can call into them: ``MapDataManager``
neither reads nor writes its file (it stays an in-memory map), and the installer raises
:class:`~lean_core.errors.MissingExtraError` (extra ``cache``) instead of running pip; the
``subprocess`` module of ``dependency_control`` is replaced by a stub that refuses to start
processes, so even a reference to the original installer cannot reach pip. The patches do not
depend on the working directory, and the working directory is never changed.

:func:`similar_cache` builds a GPTCache ``Cache`` as its documentation recommends for similarity
caching (sqlite scalar store, faiss vectors, ``SearchDistanceEvaluation`` with its defaults),
with every file in an explicit directory and the caller's embedding function.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from lean_core.errors import InvalidParameterError, LeanInferenceError, MissingExtraError

__all__ = ["GPTCACHE_DEFAULT_MAX_DISTANCE", "GPTCACHE_DEFAULT_THRESHOLD", "import_gptcache", "similar_cache"]

GPTCACHE_DEFAULT_MAX_DISTANCE = 4.0
"""``SearchDistanceEvaluation(max_distance=4.0)``: GPTCache's default bound on the search distance."""
GPTCACHE_DEFAULT_THRESHOLD = 0.8
"""``Config(similarity_threshold=0.8)``: GPTCache's default. A hit needs ``4 - d >= 0.8 * 4``, i.e.
a faiss squared-L2 distance ``d <= 0.8``, which for unit vectors is cosine >= 0.6."""

_EXTRA = "cache"
_FEATURE = "The GPTCache baseline"
_PATCHED = "__lean_inference_patched__"
_WATCHED = ("gptcache.utils.dependency_control", "gptcache.utils", "gptcache.manager.data_manager")
_lock = threading.RLock()


# -- the patches ----------------------------------------------------------------------------------
def _refuse_install(package: str, warn: bool = False) -> None:
    """Replaces ``prompt_install``: GPTCache may not pip-install anything, ever."""
    name = str(package).split("==")[0].split(">")[0].split("<")[0].strip() or "unknown"
    raise MissingExtraError(name, extra=_EXTRA, feature=f"GPTCache (it tried to pip-install {package!r} at run time, "
                            "which lean-inference blocks; the stores of the [cache] extra are the supported ones)")


class _NoSubprocess:
    """Stands in for ``subprocess`` inside ``gptcache.utils.dependency_control``."""

    class CalledProcessError(Exception):
        pass

    def __getattr__(self, name: str) -> Any:
        def refuse(*args: Any, **kwargs: Any) -> Any:
            raise MissingExtraError("subprocess", extra=_EXTRA,
                                    feature=f"{_FEATURE} (GPTCache tried subprocess.{name}{args!r})")

        return refuse


def _map_init(self: Any) -> None:
    """Replaces ``MapDataManager.init``: never read ``data_path`` (a pickle); start empty."""


def _map_flush(self: Any) -> None:
    """Replaces ``MapDataManager.flush``: never write a pickle; the map lives in memory only."""


def _patch(module: ModuleType) -> None:
    name = module.__name__
    if name == "gptcache.utils.dependency_control":
        module.prompt_install = _refuse_install  # type: ignore[attr-defined]
        module.subprocess = _NoSubprocess()  # type: ignore[attr-defined]
    elif name == "gptcache.utils":
        module.prompt_install = _refuse_install  # type: ignore[attr-defined]
    elif name == "gptcache.manager.data_manager":
        cls = module.MapDataManager
        cls.init = _map_init
        cls.flush = _map_flush
    else:
        return
    setattr(module, _PATCHED, True)


def _patch_loaded() -> None:
    for name in _WATCHED:
        module = sys.modules.get(name)
        if module is not None and not getattr(module, _PATCHED, False):
            _patch(module)


class _PatchingLoader(importlib.abc.Loader):
    """Runs the real loader, then patches the module before the importer gets it back."""

    def __init__(self, inner: importlib.abc.Loader) -> None:
        self._inner = inner

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._inner.exec_module(module)
        _patch(module)


class _PatchingFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in _WATCHED:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _PatchingLoader(spec.loader)  # type: ignore[assignment]
        return spec


def _verify(gptcache: ModuleType) -> None:
    """Fail closed: if a patch did not land (another GPTCache version), refuse to hand it out."""
    for name in _WATCHED:
        module = sys.modules.get(name)
        if module is None or not getattr(module, _PATCHED, False):
            raise LeanInferenceError(f"lean-inference could not make {name} safe (GPTCache "
                               f"{getattr(gptcache, '__version__', '?')}); refusing to use it")
    utils = sys.modules["gptcache.utils"]
    if getattr(utils, "prompt_install", None) is not _refuse_install:
        raise LeanInferenceError("gptcache.utils.prompt_install is not neutralised; refusing to use GPTCache")


def import_gptcache() -> ModuleType:
    """Import ``gptcache`` with pickle loading and run-time pip installs made impossible.

    Raises :class:`MissingExtraError` (extra ``cache``) if GPTCache is not installed, or later if
    GPTCache needs an optional package that is missing (instead of pip-installing it). If
    ``gptcache`` was imported before this call, its import-time hazard has already run; the
    patches are still applied to the loaded modules.
    """
    with _lock:
        try:
            spec = importlib.util.find_spec("gptcache")
        except (ImportError, ValueError):  # ValueError: sys.modules["gptcache"] is None or has no spec
            spec = None
        if spec is None:
            raise MissingExtraError("gptcache", extra=_EXTRA, feature=_FEATURE)
        finder = _PatchingFinder()
        sys.meta_path.insert(0, finder)
        try:
            _patch_loaded()  # modules a bare `import gptcache` may already have loaded
            # `gptcache/__init__` imports config -> utils -> dependency_control, then core ->
            # manager -> data_manager, and only then evaluates `get_data_manager()`: each watched
            # module is patched by the finder as soon as its body has run, before that call.
            gptcache = importlib.import_module("gptcache")
            for name in _WATCHED:
                importlib.import_module(name)
        finally:
            sys.meta_path.remove(finder)
        _verify(gptcache)
        return gptcache


# -- a similarity cache built the documented way, with explicit paths ------------------------------
def similar_cache(directory: str | os.PathLike[str], *, embed: Callable[[str], Any], dimension: int,
                  max_size: int = 1000, similarity_threshold: float = GPTCACHE_DEFAULT_THRESHOLD,
                  max_distance: float = GPTCACHE_DEFAULT_MAX_DISTANCE) -> Any:
    """A ``gptcache.Cache`` for ``gptcache.adapter.api.put/get``: sqlite + faiss under ``directory``.

    ``embed`` maps one prompt to a float vector of ``dimension``; ``max_size`` bounds GPTCache's
    LRU eviction (its default is 1000 entries); the threshold and max distance default to
    GPTCache's own defaults. Nothing is read from or written to the working directory.
    """
    if not isinstance(dimension, int) or dimension < 1:
        raise InvalidParameterError("dimension", allowed="an int >= 1", received=dimension)
    if not isinstance(max_size, int) or max_size < 1:
        raise InvalidParameterError("max_size", allowed="an int >= 1", received=max_size)
    if not 0.0 <= similarity_threshold <= 1.0:
        raise InvalidParameterError("similarity_threshold", allowed="a value in [0, 1]",
                                    received=similarity_threshold)
    import_gptcache()
    from gptcache import Cache, Config
    from gptcache.manager import CacheBase, VectorBase, get_data_manager
    from gptcache.processor.pre import get_prompt
    from gptcache.similarity_evaluation import SearchDistanceEvaluation

    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    sqlite_path = (root / "gptcache.sqlite3").resolve()
    data_manager = get_data_manager(
        CacheBase("sqlite", sql_url=f"sqlite:///{sqlite_path}"),
        VectorBase("faiss", dimension=dimension, index_path=str(root / "faiss.index")),
        max_size=max_size,
    )

    def embedding_func(data: str, **_: Any) -> Any:
        return embed(data)

    cache = Cache()
    cache.init(pre_embedding_func=get_prompt, embedding_func=embedding_func, data_manager=data_manager,
               similarity_evaluation=SearchDistanceEvaluation(max_distance=max_distance),
               config=Config(similarity_threshold=similarity_threshold))
    return cache
