"""Smoke suite for the built wheel, installed (not editable) in its own environment.

Run by ``.ci/wheel-check`` from a directory outside the repository:

    SMOKE_ENV/bin/python .ci/smoke_installed_wheel.py

It fails (exit 1, one line per failure) when our code is not coming from the installed wheel,
when a public name does not import, when a command's ``--help`` fails or shows markup, when a
ledger cannot record a call and report it, or when ``LeanCompress`` cannot compress a real context
with the bundled MiniLM.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

OURS = ("lean_core", "lean_chain", "lean_index", "lean_backends", "lean_benchmarks", "lean_cli")
PUBLIC = ("lean_core", "lean_chain", "lean_index", "lean_backends")
failures: list[str] = []


def check(ok: bool, what: str) -> None:
    print(("ok    " if ok else "FAIL  ") + what, flush=True)
    if not ok:
        failures.append(what)


def from_the_wheel() -> None:
    """Our packages come from this environment's site-packages, with no editable hook in sight."""
    purelib = Path(sysconfig.get_paths()["purelib"]).resolve()
    for name in OURS:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            check(False, f"{name} imports: {exc!r}")
            continue
        where = Path(module.__file__ or "").resolve()
        check(purelib in where.parents, f"{name} imports from the installed wheel ({where})")
    hooks = [type(f).__module__ for f in sys.meta_path if "editable" in type(f).__module__.lower()]
    check(not hooks, f"no editable-install import hook on sys.meta_path ({hooks})")
    check(not any("__editable__" in str(p) for p in sys.path), "no editable path on sys.path")
    for generic in ("benchmarks", "backends"):
        check(importlib.util.find_spec(generic) is None, f"the wheel installs no top-level '{generic}'")
    import lean_core

    check(lean_core.__version__ not in ("", "0+unknown"), f"lean_core.__version__ = {lean_core.__version__}")


def public_names() -> None:
    for name in PUBLIC:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            check(False, f"{name} imports: {exc!r}")
            continue
        missing = [n for n in module.__all__ if not hasattr(module, n)]
        check(not missing and bool(module.__all__), f"{name}: all {len(module.__all__)} public names import {missing}")


def _subcommands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [prefix]
    for action in parser._actions:  # argparse exposes sub-parsers only through this attribute
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _subcommands(sub, (*prefix, name))
    return found


def command_help() -> None:
    from lean_cli import build_parser

    exe = Path(sys.executable).with_name("lean-inference")
    check(exe.exists(), f"the lean-inference command is installed ({exe})")
    commands = _subcommands(build_parser())
    for command in commands:
        run = subprocess.run([str(exe), *command, "--help"], capture_output=True, text=True, timeout=120)
        text = run.stdout
        clean = "``" not in text and " issue" not in text.lower()
        check(run.returncode == 0 and clean and not run.stderr.strip(),
              f"lean-inference {' '.join(command)} --help (exit {run.returncode}{', markup' if not clean else ''}"
              f"{', stderr: ' + run.stderr.strip()[:200] if run.stderr.strip() else ''})")
    check(len(commands) >= 17, f"{len(commands) - 1} sub-commands found")


def ledger_report(tmp: Path) -> None:
    from lean_core import CostLedger, TokenUsage

    path = tmp / "ledger.sqlite"
    with CostLedger(path) as ledger:
        ledger.record_call(model="gpt-4o-mini", provider="openai",
                           usage=TokenUsage(input_tokens=1200, output_tokens=80), tenant="smoke")
    exe = Path(sys.executable).with_name("lean-inference")
    run = subprocess.run([str(exe), "report", "--ledger", str(path), "--png", str(tmp / "chart.png")],
                         capture_output=True, text=True, timeout=300)
    check(run.returncode == 0 and "gpt-4o-mini" in run.stdout and (tmp / "chart.png").exists(),
          f"a recorded call shows in `lean-inference report` (exit {run.returncode}) {run.stderr[-300:]}")


def compression() -> None:
    from importlib import resources

    from langchain_core.prompts import PromptTemplate

    from lean_chain import LeanCompress

    kb = resources.files("lean_benchmarks.demo") / "data" / "demo_kb.jsonl"
    docs = [json.loads(line) for line in kb.read_text(encoding="utf-8").splitlines() if line.strip()]
    context = "\n\n".join(f"{d['title']}\n{d['text']}" for d in docs[:8])
    question = docs[3]["title"]
    prompt = PromptTemplate.from_template("Answer from the context.\n\nContext:\n{context}\n\nQuestion: {question}")
    # The RAG form: the context is compressed for the question before the prompt is filled in.
    chain = LeanCompress(ratio=0.33, target_model="gpt-4o") | prompt
    compressed = chain.invoke({"context": context, "question": question}).to_string()
    original = prompt.format(context=context, question=question)
    check(len(compressed) < 0.7 * len(original) and compressed.endswith(f"Question: {question}"),
          f"LeanCompress | prompt: {len(original)} -> {len(compressed)} characters, question kept")

    # The README's LCEL pattern: prompt | LeanCompress() finds the context inside the human turn.
    from langchain_core.prompts import ChatPromptTemplate

    system = "You answer questions about a rail company from the context only."
    chat = ChatPromptTemplate.from_messages([("system", system),
                                             ("human", "Context:\n{context}\n\nQuestion: {question}")])
    messages = (chat | LeanCompress(ratio=0.33)).invoke({"context": context, "question": question}).to_messages()
    human = chat.invoke({"context": context, "question": question}).to_messages()[1].content
    kept = len(messages[1].content) / len(human)
    check(messages[0].content == system and messages[1].content.endswith(f"Question: {question}") and kept < 0.5,
          f"prompt | LeanCompress: the human turn keeps {kept:.2f} of its characters, system and question intact")


def main() -> int:
    repo = Path(__file__).resolve().parents[1]
    check(repo not in Path.cwd().resolve().parents and Path.cwd().resolve() != repo,
          f"running outside the repository (cwd {Path.cwd()})")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from_the_wheel()
    public_names()
    for step in (command_help, ledger_report, compression):
        try:
            if step is ledger_report:
                with tempfile.TemporaryDirectory() as tmp:
                    ledger_report(Path(tmp))
            else:
                step()
        except Exception as exc:  # a broken install shows as one failed step, then the next runs
            check(False, f"{step.__name__}: {exc!r}")
    print(f"{len(failures)} failure(s)" if failures else "wheel smoke suite passed", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
