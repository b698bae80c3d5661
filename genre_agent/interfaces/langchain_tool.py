"""LangChain integration: the agent as a tool a LangChain agent can call, and as a chat Runnable."""

from __future__ import annotations

from typing import Any

from langchain_core.runnables import RunnableLambda
from langchain_core.tools import StructuredTool
from pydantic import Field

from genre_agent.chat.agent import Agent
from genre_agent.filters import Filters


class RecommendArgs(Filters):
    """The tool's arguments: the filters (the same model as the config's [rules]), who asks and what for."""

    query: str | None = Field(None, description="what the person asks for, in their words")
    user: str | None = Field(None, description="a catalog user id, if known")
    k: int = Field(5, ge=1, le=20, description="how many recommendations")


def recommend_tool(agent: Agent) -> StructuredTool:
    """A `recommend` tool returning the JSON output contract (ids, titles, reasons, scores)."""
    noun = agent.catalog_info().item_noun_plural

    def run(**kwargs: Any) -> str:
        args = RecommendArgs(**kwargs)
        filters = Filters(**args.model_dump(include=set(Filters.model_fields)))
        return agent.recommend(args.user, args.query, args.k, filters).model_dump_json()

    return StructuredTool.from_function(
        func=run, name="recommend", args_schema=RecommendArgs,
        description=f"Recommend {noun} from the catalog for a user and/or a request, each with a reason.",
    )


def chat_runnable(agent: Agent, session_id: str = "langchain") -> RunnableLambda[str, str]:
    """A Runnable that sends each input string as one chat turn of `session_id` and returns the answer."""
    return RunnableLambda(lambda message: agent.chat(session_id, message).text)
