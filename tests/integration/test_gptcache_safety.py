"""GPTCache, imported through lean_core's wrapper, never unpickles a planted file nor runs pip.

Every check runs in a fresh interpreter (GPTCache's hazard fires on first import) whose working
directory holds a malicious ``data_map.txt``: unpickling it creates a marker file. The control
tests show that a bare ``import gptcache`` does run the planted file and does call pip, so the
safety tests are able to fail.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(importlib.util.find_spec("gptcache") is None, reason="needs lean-inference[cache] (gptcache)"),
]

MARKER = "PICKLE_RAN"


class _Planted:
    """Unpickling this creates ``MARKER`` next to the pickle (``open(path, "w")``)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return open, (str(self.marker), "w")


@pytest.fixture
def planted(tmp_path: Path) -> Path:
    """A working directory holding a malicious ``data_map.txt``."""
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    (workdir / "data_map.txt").write_bytes(pickle.dumps(_Planted(workdir / MARKER)))
    return workdir


def _run(code: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


# Installed first in each child: records (and refuses) every way GPTCache could start pip.
_RECORD_PROCESSES = """
import json, os, subprocess
CALLS = []
def _recorder(name):
    def record(*args, **kwargs):
        CALLS.append([name, repr(args)[:200]])
        raise subprocess.CalledProcessError(1, args[0] if args else name)
    return record
for _name in ("Popen", "run", "call", "check_call", "check_output", "getoutput", "getstatusoutput"):
    setattr(subprocess, _name, _recorder("subprocess." + _name))
os.system = _recorder("os.system")
"""


def test_control_bare_import_runs_the_planted_pickle(planted: Path) -> None:
    out = _run("import gptcache", planted)
    assert out.returncode == 0, out.stderr
    assert (planted / MARKER).exists(), "a bare `import gptcache` no longer unpickles ./data_map.txt"


def test_control_bare_gptcache_calls_pip_for_a_missing_dependency(planted: Path) -> None:
    out = _run(_RECORD_PROCESSES + """
import gptcache.utils
try:
    gptcache.utils._check_library("lean_inference_no_such_module")
except Exception as exc:
    print("raised", type(exc).__name__)
print(json.dumps(CALLS))
""", planted)
    assert out.returncode == 0, out.stderr
    calls = json.loads(out.stdout.strip().splitlines()[-1])
    assert any("pip install" in args for _, args in calls), calls


def test_wrapper_never_unpickles_and_serves_hits_with_our_embeddings(planted: Path, tmp_path: Path) -> None:
    before = hashlib.sha256((planted / "data_map.txt").read_bytes()).hexdigest()
    store_dir = tmp_path / "gptcache-store"
    out = _run(f"""
        import json
        from lean_core.cache._gptcache import import_gptcache, similar_cache
        from lean_core.embeddings import default_embedder

        gptcache = import_gptcache()
        from gptcache import Cache
        from gptcache.adapter.api import get, put
        from gptcache.manager import get_data_manager
        from gptcache.manager.data_manager import MapDataManager

        # Every way GPTCache builds its pickle-backed map, each pointed at the planted file.
        default_manager = get_data_manager()
        explicit = MapDataManager("data_map.txt", 10)
        explicit.save("q", "a", "q")
        explicit.flush()
        Cache().init()

        embedder = default_embedder()
        cache = similar_cache({str(store_dir)!r}, embed=lambda text: embedder.encode([text])[0], dimension=384)
        put("How do I boil an egg?", "Boil it for 9 minutes.", cache_obj=cache)
        put("What is the capital of France?", "Paris.", cache_obj=cache)
        served = get("How do I boil an egg?", cache_obj=cache)
        missed = get("Explain the offside rule in football.", cache_obj=cache)
        print(json.dumps({{"served": served, "missed": missed,
                          "default_is_empty": len(default_manager.data) == 0}}))
    """, planted)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report == {"served": "Boil it for 9 minutes.", "missed": None, "default_is_empty": True}
    assert not (planted / MARKER).exists(), "the planted pickle ran"
    assert hashlib.sha256((planted / "data_map.txt").read_bytes()).hexdigest() == before, "a pickle was written"
    assert sorted(p.name for p in planted.iterdir()) == ["data_map.txt"], "GPTCache wrote into the cwd"
    assert (store_dir / "gptcache.sqlite3").exists()


def test_wrapper_after_a_bare_import_still_neutralises_what_is_loaded(planted: Path) -> None:
    # Someone imported gptcache first: its import-time hazard has run (nothing can undo that), but
    # from then on the wrapper's patches hold.
    out = _run("""
        import os, gptcache
        os.remove("PICKLE_RAN")
        from lean_core.cache._gptcache import import_gptcache
        import_gptcache()
        from gptcache.manager import get_data_manager
        get_data_manager()
        print("ok")
    """, planted)
    assert out.returncode == 0, out.stderr
    assert not (planted / MARKER).exists()


def test_missing_optional_dependency_raises_missing_extra_and_never_runs_pip(planted: Path) -> None:
    out = _run(_RECORD_PROCESSES + """
from lean_core.errors import MissingExtraError
from lean_core.cache._gptcache import import_gptcache
import importlib.util
gptcache = import_gptcache()
import gptcache.utils
import gptcache.utils.dependency_control as dependency_control
outcomes = {}
attempts = {
    "check_library": lambda: gptcache.utils._check_library("lean_inference_no_such_module"),
    "prompt_install": lambda: dependency_control.prompt_install("lean-inference-no-such-package"),
    "subprocess_stub": lambda: dependency_control.subprocess.check_call("pip install x", shell=True),
}
if importlib.util.find_spec("pymilvus") is None:  # a store module that checks on import
    def _milvus():
        from gptcache.manager import VectorBase
        VectorBase("milvus", dimension=8)
    attempts["milvus_store"] = _milvus
for name, attempt in attempts.items():
    try:
        attempt()
        outcomes[name] = "no error"
    except MissingExtraError as exc:
        outcomes[name] = "MissingExtraError:" + exc.extra
    except Exception as exc:
        outcomes[name] = type(exc).__name__ + ":" + str(exc)[:200]
print(json.dumps({"outcomes": outcomes, "calls": CALLS}))
""", planted)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["calls"] == [], report["calls"]
    assert report["outcomes"], report
    assert set(report["outcomes"].values()) == {"MissingExtraError:cache"}, report["outcomes"]
    assert not (planted / MARKER).exists()


def test_missing_gptcache_raises_missing_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from lean_core.cache import _gptcache
    from lean_core.errors import MissingExtraError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a, **k: None if name == "gptcache" else real(name, *a, **k))
    with pytest.raises(MissingExtraError) as caught:
        _gptcache.import_gptcache()
    assert caught.value.extra == "cache"
    assert "lean-inference[cache]" in str(caught.value)
