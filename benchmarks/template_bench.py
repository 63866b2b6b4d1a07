"""``lean-inference bench template``: verbose hand-written prompt templates against lean ones.

The bundled file (``benchmarks/data/verbose_templates.jsonl``) holds realistic verbose templates
(RAG answerers, extractors, classifiers, a router, an agent system prompt, a summariser, a SQL
helper, a reply writer), each with the :class:`~lean_core.templates.PromptSpec` that carries the
same instructions compactly, a ``deterministic`` flag, and variable sets (with expected labels or
fields for the deterministic tasks). Per template:

* **tokens**: the template alone (every variable empty) and the mean full prompt, verbose vs lean,
  in SmolLM2's tokenizer and in gpt-4o's (an estimate where o200k is not cached), chat framing
  included; the local engine's own prompt-token counts too (its chat template adds SmolLM2's
  default system prompt to a prompt without one, which the verbose single-message prompts pay).
* **lint**: findings on the verbose template and the tokens they cost.
* **outputs** (local vLLM engine, greedy, JSON-guided decoding for the deterministic tasks): the
  verbose prompt (one user message, as users send it) and the lean one (stable first). Same-output
  rate after normalisation, and for deterministic tasks the accuracy of both against the expected
  labels/fields. Generative tasks get the same-output rate and the token F1 between the two
  answers for information only: free text from a 135M model changes with any prompt change.
* **prefix cache**: a stream of requests interleaving the templates (seeded shuffle, like real
  traffic), sent one by one through the engine, once rendered ``stable_first`` and once
  ``naive`` (variables first), each under its own cache salt. For each request after a template's
  first: cached prompt tokens / the tokens of the stable prefix (the system message as the engine
  sees it), capped at 1 (exact repeats of an earlier request are sent but not measured: any
  ordering hits them in full), and the block-aligned ceiling: vLLM caches whole KV blocks only (32
  tokens on CPU here), so of a 70-token prefix at best 64 tokens can hit; the ceiling is computed
  per request from the longest token prefix it shares with any earlier request of the stream.
"""

from __future__ import annotations

import json
import platform
import random
import re
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lean_core.errors import InvalidParameterError
from lean_core.templates import PromptSpec, format_text_template, lint_prompt, render_prompt
from lean_core.tokens import TokenCounter

__all__ = ["DEFAULT_TEMPLATES", "load_templates", "run_template_bench"]

DEFAULT_TEMPLATES = Path(__file__).parent / "data" / "verbose_templates.jsonl"
DEFAULT_OUT = Path("benchmarks/results/template.json")
TOKENIZER_MODELS = ("smollm2-135m-instruct", "gpt-4o")
_WS = re.compile(r"\s+")
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class BenchTemplate:
    name: str
    kind: str
    deterministic: bool
    verbose: str
    spec: PromptSpec
    cases: list[dict[str, Any]]
    schema: dict[str, Any] | None


def load_templates(path: Path = DEFAULT_TEMPLATES) -> list[BenchTemplate]:
    """Templates of a JSONL file; each line is checked (the spec validates, variables match)."""
    out: list[BenchTemplate] = []
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        raw = json.loads(line)
        where = f"{path}:{number}"
        spec = PromptSpec.model_validate(raw["spec"])
        cases = raw.get("cases") or []
        if not cases:
            raise InvalidParameterError("cases", allowed=f"at least one variable set ({where})", received=cases)
        for case in cases:  # every case must fill both templates, or the comparison is void
            format_text_template(raw["verbose"], case["variables"], section=f"verbose ({where})")
            render_prompt(spec, case["variables"], model="gpt-4")
        out.append(BenchTemplate(name=raw["name"], kind=raw["kind"], deterministic=bool(raw["deterministic"]),
                                 verbose=raw["verbose"], spec=spec, cases=cases, schema=raw.get("schema")))
    return out


@dataclass
class TokenRow:
    model: str
    estimated: bool
    verbose_template: int
    lean_template: int
    template_reduction: float
    verbose_prompt_mean: float
    lean_prompt_mean: float
    prompt_reduction: float


@dataclass
class TemplateRow:
    name: str
    kind: str
    deterministic: bool
    cases: int
    tokens: list[TokenRow]
    lint_findings: int
    lint_removable_tokens: int
    lint_uncacheable_tokens: int
    lint_by_kind: dict[str, int]
    lean_lint_findings: int
    pool_examples_dropped_mean: float | None = None
    engine_prompt_tokens_verbose_mean: float | None = None
    engine_prompt_tokens_lean_mean: float | None = None
    same_output_rate: float | None = None
    same_output_rate_control: float | None = None
    """Verbose vs the same verbose prompt with its line breaks doubled (a change that means nothing):
    how often the local model's output survives *any* prompt change, the floor for the row above."""
    output_token_f1_mean: float | None = None
    accuracy_verbose: float | None = None
    accuracy_lean: float | None = None
    outputs: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class CacheRow:
    order: str
    requests: int
    measured_requests: int
    repeats_not_measured: int
    """Requests identical to an earlier one (the stream cycles through each template's cases)."""
    stable_tokens_mean: float
    cached_tokens_mean: float
    cached_share_mean: float
    """Mean of min(cached, stable) / stable over the measured requests."""
    block_ceiling_mean: float
    """Mean of the best share any block cache could reach: whole blocks of the longest prefix the
    request shares with an earlier one, at most the stable prefix, over the stable prefix."""
    share_of_ceiling: float
    per_template: dict[str, float] = field(default_factory=dict)


@dataclass
class TemplateBenchResult:
    benchmark: str
    templates_path: str
    templates: int
    deterministic_templates: int
    model: str | None
    device: str | None
    block_size: int | None
    date: str
    rows: list[TemplateRow] = field(default_factory=list)
    cache: list[CacheRow] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


def _normalise(text: str) -> Any:
    """Parsed JSON when it parses (strings folded), else the folded text."""
    try:
        value = json.loads(text)
    except ValueError:
        return _WS.sub(" ", text).strip().strip(".").casefold()
    return _fold(value)


def _fold(value: Any) -> Any:
    if isinstance(value, str):
        return _WS.sub(" ", value).strip().casefold()
    if isinstance(value, dict):
        return {k: _fold(v) for k, v in value.items()}
    if isinstance(value, int | float) and not isinstance(value, bool):
        return round(float(value), 4)
    return value


def _accuracy(output: Any, expected: Any) -> float:
    """Share of expected fields matched (a label: 0 or 1)."""
    expected = _fold(expected)
    if isinstance(expected, dict):
        got = output if isinstance(output, dict) else {}
        return sum(got.get(k) == v for k, v in expected.items()) / len(expected)
    return float(output == expected)


def _token_f1(a: str, b: str) -> float:
    wa, wb = _WORD.findall(a.lower()), _WORD.findall(b.lower())
    if not wa or not wb:
        return float(wa == wb)
    common = sum(min(wa.count(w), wb.count(w)) for w in set(wa))
    if not common:
        return 0.0
    precision, recall = common / len(wb), common / len(wa)
    return 2 * precision * recall / (precision + recall)


def _token_rows(t: BenchTemplate, counter: TokenCounter) -> list[TokenRow]:
    rows = []
    empty = {v: "" for v in t.spec.variables}
    for model in TOKENIZER_MODELS:
        def verbose_tokens(values: dict[str, Any], model: str = model) -> int:
            return counter.count_messages([("user", format_text_template(t.verbose, values))], model).tokens

        vt = verbose_tokens(empty)
        lean_empty = render_prompt(t.spec, empty, model=model, counter=counter)
        vp = statistics.fmean(verbose_tokens(c["variables"]) for c in t.cases)
        lp = statistics.fmean(render_prompt(t.spec, c["variables"], model=model, counter=counter).total_tokens
                              for c in t.cases)
        rows.append(TokenRow(model=model, estimated=lean_empty.estimated, verbose_template=vt,
                             lean_template=lean_empty.total_tokens,
                             template_reduction=1 - lean_empty.total_tokens / vt,
                             verbose_prompt_mean=vp, lean_prompt_mean=lp, prompt_reduction=1 - lp / vp))
    return rows


def _static_row(t: BenchTemplate, counter: TokenCounter) -> TemplateRow:
    report = lint_prompt(t.verbose, model="gpt-4o", counter=counter)
    lean_text = render_prompt(t.spec, {v: f"{{{v}}}" for v in t.spec.variables}, counter=counter).text
    dropped = [render_prompt(t.spec, c["variables"], counter=counter).examples for c in t.cases]
    return TemplateRow(
        name=t.name, kind=t.kind, deterministic=t.deterministic, cases=len(t.cases),
        tokens=_token_rows(t, counter), lint_findings=len(report.findings),
        lint_removable_tokens=report.removable_tokens, lint_uncacheable_tokens=report.uncacheable_tokens,
        lint_by_kind=report.by_kind(),
        lean_lint_findings=sum(f.kind != "variable_before_stable" for f in lint_prompt(lean_text).findings),
        pool_examples_dropped_mean=statistics.fmean(d.dropped for d in dropped if d) if any(dropped) else None,
    )


def _run_outputs(engine: Any, templates: Sequence[BenchTemplate], rows: Sequence[TemplateRow],
                 max_tokens: int, progress: Any) -> None:
    from lean_core.generation import SamplingOptions

    task = progress.add_task("outputs: verbose vs lean", total=len(templates))
    model = engine.model_name
    for t, row in zip(templates, rows, strict=True):
        options = SamplingOptions(max_tokens=max_tokens, json_schema=t.schema)
        verbose = [[{"role": "user", "content": format_text_template(t.verbose, c["variables"])}] for c in t.cases]
        lean = [render_prompt(t.spec, c["variables"], model=model).to_dicts() for c in t.cases]
        # Each side under its own salt: neither may be served the other's cached prefix.
        out_v = engine.generate_many(verbose, options, cache_salt=f"outputs-verbose-{t.name}")
        out_l = engine.generate_many(lean, options, cache_salt=f"outputs-lean-{t.name}")
        spaced = [[{"role": "user", "content": m[0]["content"].replace("\n", "\n\n")}] for m in verbose]
        out_c = engine.generate_many(spaced, options, cache_salt=f"outputs-control-{t.name}")
        norm_v, norm_l = [_normalise(o.text) for o in out_v], [_normalise(o.text) for o in out_l]
        row.same_output_rate_control = statistics.fmean(
            a == _normalise(c.text) for a, c in zip(norm_v, out_c, strict=True))
        row.engine_prompt_tokens_verbose_mean = statistics.fmean(o.usage.input_tokens for o in out_v)
        row.engine_prompt_tokens_lean_mean = statistics.fmean(o.usage.input_tokens for o in out_l)
        row.same_output_rate = statistics.fmean(a == b for a, b in zip(norm_v, norm_l, strict=True))
        row.output_token_f1_mean = statistics.fmean(
            _token_f1(a.text, b.text) for a, b in zip(out_v, out_l, strict=True))
        if t.deterministic:
            row.accuracy_verbose = statistics.fmean(_accuracy(o, c["expected"]) for o, c in zip(norm_v, t.cases, strict=True))
            row.accuracy_lean = statistics.fmean(_accuracy(o, c["expected"]) for o, c in zip(norm_l, t.cases, strict=True))
        row.outputs = [{"verbose": a.text, "lean": b.text, "verbose_spaced": d.text, "expected": c.get("expected")}
                       for a, b, d, c in zip(out_v, out_l, out_c, t.cases, strict=True)]
        progress.advance(task)


def _stream(templates: Sequence[BenchTemplate], requests: int, seed: int) -> list[tuple[int, int]]:
    """(template, case) pairs: templates drawn at random (seeded), each template's cases in turn."""
    rng = random.Random(seed)
    next_case = [0] * len(templates)
    out = []
    for _ in range(requests):
        i = rng.randrange(len(templates))
        out.append((i, next_case[i] % len(templates[i].cases)))
        next_case[i] += 1
    return out


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _run_cache(engine: Any, templates: Sequence[BenchTemplate], requests: int, block: int, seed: int,
               progress: Any) -> list[CacheRow]:
    from lean_core.generation import SamplingOptions

    tokenizer = engine.tokenizer
    model = engine.model_name
    stable_tokens = []
    for t in templates:  # the stable prefix as the engine sees it: the whole system turn
        system = render_prompt(t.spec, {v: "" for v in t.spec.variables}, model=model).to_dicts()[:1]
        text = tokenizer.apply_chat_template(system, tokenize=False, add_generation_prompt=False)
        stable_tokens.append(len(tokenizer(text, add_special_tokens=False)["input_ids"]))
    stream = _stream(templates, requests, seed)
    options = SamplingOptions(max_tokens=1)  # only the prompt's cache hit is measured
    rows = []
    for order in ("stable_first", "naive"):
        task = progress.add_task(f"prefix cache: {order}", total=len(stream))
        seen: set[int] = set()
        sent: list[list[int]] = []
        measured: list[tuple[int, int]] = []
        ceilings: list[float] = []
        repeats = 0
        for i, c in stream:
            t = templates[i]
            prompt = render_prompt(t.spec, t.cases[c]["variables"], model=model, order=order).to_dicts()
            ids = engine.encode(prompt)
            result = engine.generate(prompt, options, cache_salt=f"stream-{order}-{seed}")
            if ids in sent:
                # An exact repeat hits whatever the ordering: it would flatter the naive order,
                # so it is sent (it is traffic) but not measured.
                repeats += 1
            elif i in seen:
                measured.append((i, int(result.usage.cached_input_tokens)))
                # The best any cache could do: whole blocks of the longest prefix shared with an
                # earlier prompt (the last prompt token is always computed), up to the stable prefix.
                shared = min(max(_common_prefix(ids, p) for p in sent), len(ids) - 1)
                ceilings.append(min((shared // block) * block, stable_tokens[i]) / stable_tokens[i])
            seen.add(i)
            sent.append(ids)
            progress.advance(task)
        shares = [min(cached, stable_tokens[i]) / stable_tokens[i] for i, cached in measured]
        per_template: dict[str, list[float]] = {}
        for (i, _), share in zip(measured, shares, strict=True):
            per_template.setdefault(templates[i].name, []).append(share)
        mean_share = statistics.fmean(shares) if shares else 0.0
        mean_ceiling = statistics.fmean(ceilings) if ceilings else 0.0
        rows.append(CacheRow(
            order=order, requests=len(stream), measured_requests=len(measured), repeats_not_measured=repeats,
            stable_tokens_mean=statistics.fmean(stable_tokens[i] for i, _ in measured) if measured else 0.0,
            cached_tokens_mean=statistics.fmean(c for _, c in measured) if measured else 0.0,
            cached_share_mean=mean_share, block_ceiling_mean=mean_ceiling,
            share_of_ceiling=mean_share / mean_ceiling if mean_ceiling else 0.0,
            per_template={k: statistics.fmean(v) for k, v in per_template.items()},
        ))
    return rows


def run_template_bench(*, templates_path: Path = DEFAULT_TEMPLATES, requests: int = 120,
                       names: Sequence[str] | None = None, engine: bool = True, outputs: bool = True,
                       max_tokens: int = 64, seed: int = 0, out: Path | None = None,
                       png: Path | None = None, show_progress: bool = True) -> dict[str, Any]:
    """Run the benchmark; returns the JSON-able result (also written to ``out`` and drawn to ``png``).

    ``names`` limits it to those templates; ``engine=False`` skips everything that needs vLLM
    (tokens and lint only); ``outputs=False`` skips the verbose-vs-lean generations.
    """
    from lean_benchmarks.progress import bench_progress

    if requests < 1:
        raise InvalidParameterError("requests", allowed="an integer >= 1", received=requests)
    templates = load_templates(templates_path)
    if names:
        unknown = sorted(set(names) - {t.name for t in templates})
        if unknown:
            raise InvalidParameterError("names", allowed=f"names from {[t.name for t in templates]}",
                                        received=unknown)
        templates = [t for t in templates if t.name in names]
    counter = TokenCounter()
    result = TemplateBenchResult(benchmark="template", templates_path=str(templates_path), templates=len(templates),
                                 deterministic_templates=sum(t.deterministic for t in templates),
                                 model=None, device=None, block_size=None, date=time.strftime("%Y-%m-%d"))
    with bench_progress(show=show_progress) as progress:
        task = progress.add_task("tokens and lint", total=len(templates))
        for t in templates:
            result.rows.append(_static_row(t, counter))
            progress.advance(task)
        if engine:
            from vllm.platforms import current_platform

            from lean_backends.vllm_engine import VLLMEngineSettings, get_engine, resolve_model_dir

            settings = VLLMEngineSettings(model=str(resolve_model_dir(None)))
            local = get_engine(settings)
            started = progress.add_task("starting the local vLLM engine", total=1)
            local.start()
            progress.advance(started)
            on_cpu = current_platform.is_cpu()
            result.model = local.model_name
            result.block_size = settings.block_size or (32 if on_cpu else 16)
            result.device = ("cpu" if on_cpu else current_platform.get_device_name()) + \
                f" ({platform.processor() or platform.machine()})"
            if outputs:
                _run_outputs(local, templates, result.rows, max_tokens, progress)
            result.cache = _run_cache(local, templates, requests, result.block_size, seed, progress)
    result.summary = _summary(result)
    data = asdict(result)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(data, indent=2, ensure_ascii=False))
    if png is not None:
        _chart(result, png)
    return data


def _summary(result: TemplateBenchResult) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for model in TOKENIZER_MODELS:
        rows = [next(tr for tr in r.tokens if tr.model == model) for r in result.rows]
        summary[f"template_reduction_{model}"] = 1 - sum(r.lean_template for r in rows) / sum(
            r.verbose_template for r in rows)
        summary[f"prompt_reduction_{model}"] = 1 - sum(r.lean_prompt_mean for r in rows) / sum(
            r.verbose_prompt_mean for r in rows)
        summary[f"templates_at_30pct_{model}"] = sum(r.template_reduction >= 0.3 for r in rows)
    det = [r for r in result.rows if r.deterministic and r.same_output_rate is not None]
    if det:  # weighted by cases, so every request counts once
        cases = sum(r.cases for r in det)
        summary["deterministic_same_output_rate"] = sum((r.same_output_rate or 0.0) * r.cases for r in det) / cases
        summary["deterministic_same_output_rate_control"] = sum(
            (r.same_output_rate_control or 0.0) * r.cases for r in det) / cases
        summary["deterministic_accuracy_verbose"] = sum((r.accuracy_verbose or 0.0) * r.cases for r in det) / cases
        summary["deterministic_accuracy_lean"] = sum((r.accuracy_lean or 0.0) * r.cases for r in det) / cases
    for row in result.cache:
        summary[f"cached_share_{row.order}"] = row.cached_share_mean
        summary[f"block_ceiling_{row.order}"] = row.block_ceiling_mean
    return summary


def _chart(result: TemplateBenchResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 1 + bool(result.cache) + any(r.same_output_rate is not None for r in result.rows)
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 4.2), squeeze=False)
    ax = axes[0][0]
    names = [r.name for r in result.rows]
    smol = [next(t for t in r.tokens if t.model == "smollm2-135m-instruct") for r in result.rows]
    y = range(len(names))
    ax.barh([i + 0.2 for i in y], [t.verbose_template for t in smol], height=0.4, color="#999999", label="verbose")
    ax.barh([i - 0.2 for i in y], [t.lean_template for t in smol], height=0.4, color="#4C72B0", label="lean")
    ax.set_yticks(list(y), names, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("template tokens (SmolLM2 tokenizer)")
    ax.set_title(f"template tokens: -{result.summary['template_reduction_smollm2-135m-instruct']:.0%}", fontsize=9)
    ax.legend(fontsize=7)
    k = 1
    det = [r for r in result.rows if r.same_output_rate is not None]
    if det:
        ax = axes[0][k]
        k += 1
        y = range(len(det))
        ax.barh([i - 0.27 for i in y], [r.same_output_rate or 0 for r in det], height=0.27, color="#55A868",
                label="same output (verbose = lean)")
        ax.barh(list(y), [r.accuracy_verbose or 0 for r in det], height=0.27, color="#999999",
                label="accuracy verbose")
        ax.barh([i + 0.27 for i in y], [r.accuracy_lean or 0 for r in det], height=0.27, color="#4C72B0",
                label="accuracy lean")
        ax.set_yticks(list(y), [r.name + ("" if r.deterministic else " *") for r in det], fontsize=7)
        ax.invert_yaxis()
        ax.set_xlim(0, 1.05)
        ax.set_title("local model, greedy (* generative: no accuracy)", fontsize=9)
        ax.legend(fontsize=6, loc="lower right")
    if result.cache:
        ax = axes[0][k]
        orders = [c.order for c in result.cache]
        ax.bar(orders, [c.cached_share_mean for c in result.cache], color=["#4C72B0", "#999999"])
        for x, c in enumerate(result.cache):
            ax.hlines(c.block_ceiling_mean, x - 0.4, x + 0.4, colors="black", linestyles="dashed")
            ax.annotate(f"{c.cached_share_mean:.2f}", (x, c.cached_share_mean), ha="center", va="bottom")
        ax.set_ylim(0, 1.1)
        ax.set_ylabel("cached tokens / stable-prefix tokens")
        ax.set_title(f"prefix cache over {result.cache[0].requests} interleaved requests\n"
                     f"(dashed: {result.block_size}-token block ceiling)", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
