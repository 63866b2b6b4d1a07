"""lean-inference middleware for LangChain 1.x agents (``langchain.agents.create_agent``).

    agent = create_agent(model, tools, middleware=[
        LeanLedgerMiddleware(ledger),                      # outermost: every paid call, per step
        LeanCacheMiddleware(ledger=ledger),                # tool-aware response cache, per tenant
        LeanBudgetMiddleware(ledger=ledger),               # predicted max_tokens, no silent cuts
        LeanCompressMiddleware(ratio=0.4, ledger=ledger),  # tool results compressed once: stable prefix
    ])

Needs the ``agents`` extra (``pip install 'lean-inference[agents]'``: langchain >= 1.0).
``import lean_chain`` does not import this package (nor ``langchain``).
"""

from lean_core._extras import require as _require

_require("langchain.agents.middleware", extra="agents", feature="lean_chain.middleware")

from lean_chain.middleware.budget import LeanBudgetMiddleware  # noqa: E402
from lean_chain.middleware.cache import LeanCacheMiddleware  # noqa: E402
from lean_chain.middleware.compress import LeanCompressMiddleware  # noqa: E402
from lean_chain.middleware.ledger import LeanLedgerMiddleware  # noqa: E402
from lean_chain.middleware.prompt_cache import LeanPromptCacheMiddleware  # noqa: E402

__all__ = [
    "LeanBudgetMiddleware",
    "LeanCacheMiddleware",
    "LeanCompressMiddleware",
    "LeanLedgerMiddleware",
    "LeanPromptCacheMiddleware",
]
