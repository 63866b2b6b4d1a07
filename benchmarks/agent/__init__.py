"""``lean-inference bench agent``: a multi-step tool-using LangChain agent on the shared data.

Plain agent vs LangChain's ``SummarizationMiddleware`` vs the ``lean_chain.middleware`` stack, on
a real ``vllm serve`` with the real ``ChatOpenAI`` client; tool choices are scripted so the run
is deterministic with the bundled 135M model. Heavy imports (LangChain agents, vLLM) load when a
function runs, not on import.
"""

from lean_benchmarks.agent.metrics import (
    ConfigSummary,
    ModelCall,
    PriceReference,
    TargetCheck,
    TaskRun,
    check_targets,
    price_calls,
    summarize_runs,
)
from lean_benchmarks.agent.runner import run_agent_bench
from lean_benchmarks.agent.tasks import AgentTask, build_agent_tasks

__all__ = [
    "AgentTask",
    "ConfigSummary",
    "ModelCall",
    "PriceReference",
    "TargetCheck",
    "TaskRun",
    "build_agent_tasks",
    "check_targets",
    "price_calls",
    "run_agent_bench",
    "summarize_runs",
]

