from __future__ import annotations

import os

import pytest

_SECRET_OR_TRACING = (
    "OPENROUTER_API_KEY",
    "OPENROUTER_BASE_URL",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "ANTHROPIC_API_KEY",
    "TAVILY_API_KEY",
    "BRAVE_SEARCH_API_KEY",
    "SEARXNG_URL",
    "LANGFUSION_SEARCH_BACKEND",
)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never read the developer's keys or send traces anywhere."""
    for name in list(os.environ):
        if name in _SECRET_OR_TRACING or name.startswith(("LANGSMITH_", "LANGCHAIN_")):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LANGSMITH_TRACING", "false")
    monkeypatch.setenv("LANGSMITH_TEST_TRACKING", "false")
    # tiktoken's first use downloads its encoding from the internet: projections count
    # four characters a token instead, whatever a test runs.
    monkeypatch.setenv("LANGFUSION_TOKEN_COUNTING", "estimate")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test of the embedded model is in the slow tier (``-m "not slow"`` leaves it out)."""
    for item in items:
        if item.get_closest_marker("local_model") is not None:
            item.add_marker(pytest.mark.slow)
