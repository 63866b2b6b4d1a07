"""Layer 5: exact and verified semantic response caching, namespaced by tenant and model."""

from lean_core.cache.answer_equivalence import (
    AllOf,
    AnswerEquivalence,
    AnyOf,
    EmbeddingEquivalence,
    FactsAgree,
    JudgeEquivalence,
    JudgeFailures,
    NormalizedExactMatch,
    answer_text,
    default_answer_equivalence,
)
from lean_core.cache.calibrate import LabelledPair, fit_calibration, is_calibration_pair, load_pairs
from lean_core.cache.conversation_key import ConversationKey, ConversationTurn, conversation_key
from lean_core.cache.error_budget import (
    BudgetDecision,
    ErrorBudget,
    ErrorEstimate,
    EvidenceDamagedError,
    Observation,
)
from lean_core.cache.normalize import normalize_prompt, prompt_key
from lean_core.cache.pair_features import PairFeatures, pair_features
from lean_core.cache.postgres_store import PostgresCacheStore
from lean_core.cache.response_cache import CacheMode, ResponseCache
from lean_core.cache.sqlite_store import SQLiteCacheStore, default_cache_path, rebuild_sqlite_store
from lean_core.cache.store import CacheStore
from lean_core.cache.tenancy import (
    current_prefix_salt,
    current_tenant,
    in_current_context,
    prefix_salt_scope,
    tenant_scope,
)
from lean_core.cache.types import (
    CacheEntry,
    CacheLookup,
    CacheNamespace,
    CacheStats,
    HitKind,
    NamespaceCacheStats,
    SemanticCandidate,
    UnstorableEntryError,
    check_tenant,
)
from lean_core.cache.verifier import (
    Calibration,
    SemanticVerifier,
    Verdict,
    default_calibration_path,
)

__all__ = [
    "AllOf",
    "AnswerEquivalence",
    "AnyOf",
    "BudgetDecision",
    "CacheEntry",
    "CacheLookup",
    "CacheMode",
    "CacheNamespace",
    "CacheStats",
    "CacheStore",
    "Calibration",
    "ConversationKey",
    "ConversationTurn",
    "EmbeddingEquivalence",
    "ErrorBudget",
    "ErrorEstimate",
    "EvidenceDamagedError",
    "FactsAgree",
    "HitKind",
    "JudgeEquivalence",
    "JudgeFailures",
    "LabelledPair",
    "NamespaceCacheStats",
    "NormalizedExactMatch",
    "Observation",
    "PairFeatures",
    "PostgresCacheStore",
    "ResponseCache",
    "SQLiteCacheStore",
    "SemanticCandidate",
    "SemanticVerifier",
    "UnstorableEntryError",
    "Verdict",
    "answer_text",
    "check_tenant",
    "conversation_key",
    "current_prefix_salt",
    "current_tenant",
    "default_answer_equivalence",
    "default_cache_path",
    "default_calibration_path",
    "fit_calibration",
    "in_current_context",
    "is_calibration_pair",
    "load_pairs",
    "normalize_prompt",
    "pair_features",
    "prefix_salt_scope",
    "prompt_key",
    "rebuild_sqlite_store",
    "tenant_scope",
]
