"""A small LangGraph agent whose model calls go through the lean-inference cache, per tenant.

Runs offline with the bundled SmolLM2-135M-Instruct served in this process by vLLM
(`ChatLeanVLLM`). The graph is route -> (faq | room_status) -> answer:

* route: a rule, not the model. A question naming a room code ("B4") goes to the `room_status`
  tool, anything else to `faq`, which picks the closest entry of a small FAQ with the bundled
  MiniLM embedder.
* answer: the model writes one sentence from that FAQ entry or tool result. This is the only
  model call, and it goes through `LeanCache` (`set_llm_cache`): the same question again is an
  exact hit; a reworded one is a semantic hit only when the calibrated verifier accepts it (it
  is conservative: "At what time ..." is served, "When does ..." goes to the model). The
  retrieved fact or tool result is part of the prompt, so a question about another room never
  gets this room's answer. Each tenant (`config={"metadata": {"tenant": ...}}` on the graph) has
  its own entries: another tenant asking the very same question goes to the model.

What a 135M model can and cannot do here: it has no tool-calling format (its chat template has
none, and `ChatLeanVLLM` offers no `bind_tools`), and it cannot be trusted to choose a route:
asked to pick "faq" or "room_status" through guided JSON, it chose right for 5 of 8 test
questions here, about what a coin would do. So this is a fixed graph, not a model-driven ReAct
loop. It can restate one short fact in a sentence, and usually does; it sometimes adds or garbles
details (it answers "No" to "Is room B4 free this afternoon?" when the tool says it is, and a
"free" in the tool result can set it talking about prices), so do not read its answers as
checked facts. With a larger chat model that supports tools, swap
`ChatLeanVLLM` for it and let the model route: the cache, the tenants and the ledger work the same.

    python examples/cached_agent.py [--cache PATH] [--ledger PATH]
"""

from __future__ import annotations

import argparse
import re
import time
from typing import Any, Literal, TypedDict

from langchain_core.globals import set_llm_cache
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph

from lean_chain import ChatLeanVLLM, LeanCache, LeanCostCallback
from lean_core import CostLedger
from lean_core.cache import ResponseCache, SQLiteCacheStore
from lean_core.embeddings import default_embedder
from lean_core.report import render_table

# Invented facts about an invented coworking space.
FAQ = (
    "The front desk at Quillgate Works opens at 7:30 am on weekdays and 10 am on Saturdays.",
    "A day pass costs 25 euros and includes coffee and a locker.",
    "Members can bring two guests per month for free; further guests pay 10 euros each.",
    "The quiet floor is the third floor: phone calls are not allowed there.",
    "Parcels are held at the front desk for 14 days.",
)
ROOMS = {  # what the room_status tool "looks up"
    "B4": "Room B4 is available today from 1 pm to 6 pm.",
    "C2": "Room C2 is available today until 12 noon.",
}
ROOM_CODE = re.compile(r"\b([A-D][0-9])\b")
STREAM = (  # (tenant, question)
    ("acme", "What time does the front desk open?"),
    ("acme", "What time does the front desk open?"),        # exact repeat
    ("acme", "At what time does the front desk open?"),     # reworded: a verified semantic hit
    ("acme", "When does the front desk open?"),             # reworded further: the verifier refuses it
    ("acme", "When is room B4 available today?"),           # tool
    ("acme", "When is room B4 available today?"),           # tool, repeat
    ("acme", "When is room C2 available today?"),           # another room: another tool result
    ("globex", "What time does the front desk open?"),      # other tenant: never gets acme's answer
    ("globex", "At what time does the front desk open?"),   # globex's own entry, reworded
    ("acme", "How much is a day pass?"),
)


class AgentState(TypedDict, total=False):
    question: str
    route: Literal["faq", "room_status"]
    facts: str
    answer: str


def build_graph(llm: ChatLeanVLLM) -> Any:
    embedder = default_embedder()
    faq_vectors = embedder.encode(list(FAQ))

    def route(state: AgentState) -> AgentState:
        return {"route": "room_status" if ROOM_CODE.search(state["question"]) else "faq"}

    def faq(state: AgentState) -> AgentState:
        scores = faq_vectors @ embedder.encode([state["question"]])[0]
        return {"facts": FAQ[int(scores.argmax())]}

    def room_status(state: AgentState) -> AgentState:
        match = ROOM_CODE.search(state["question"])
        code = match.group(1) if match else ""
        return {"facts": ROOMS.get(code, f"There is no room {code}.")}

    def answer(state: AgentState, config: RunnableConfig) -> AgentState:
        messages = [
            SystemMessage(f"Answer in one short sentence using only this information:\n{state['facts']}"),
            HumanMessage(state["question"]),
        ]
        # The graph's config carries the tenant and the callbacks down to the model call.
        return {"answer": str(llm.invoke(messages, config=config).content).strip()}

    graph = StateGraph(AgentState)
    graph.add_node("route", route)
    graph.add_node("faq", faq)
    graph.add_node("room_status", room_status)
    graph.add_node("answer", answer)
    graph.add_edge(START, "route")
    graph.add_conditional_edges("route", lambda s: s["route"], ["faq", "room_status"])
    graph.add_edge("faq", "answer")
    graph.add_edge("room_status", "answer")
    graph.add_edge("answer", END)
    return graph.compile()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", default="example-agent-cache.sqlite3", help="SQLite cache file")
    parser.add_argument("--ledger", default="example-agent-ledger.sqlite3", help="cost ledger file")
    args = parser.parse_args(argv)

    ledger = CostLedger(args.ledger)
    cache = ResponseCache(SQLiteCacheStore(args.cache), ttl_s=24 * 3600, ledger=ledger)
    set_llm_cache(LeanCache(cache=cache))
    agent = build_graph(ChatLeanVLLM(max_tokens=48))
    callback = LeanCostCallback(ledger)

    for tenant, question in STREAM:
        exact, semantic = cache.stats.exact_hits, cache.stats.semantic_hits
        started = time.perf_counter()
        state = agent.invoke({"question": question},
                             config={"callbacks": [callback], "metadata": {"tenant": tenant}})
        served = ("cache exact" if cache.stats.exact_hits > exact
                  else "cache semantic" if cache.stats.semantic_hits > semantic else "model")
        print(f"[{tenant:6}] {state['route']:11} {served:14} {time.perf_counter() - started:5.2f}s  "
              f"{question}\n{'':9}-> {state['answer']}")

    print(f"\n{cache.stats}")
    print(render_table(ledger.summary()))
    set_llm_cache(None)
    cache.close()
    ledger.close()


if __name__ == "__main__":
    main()
