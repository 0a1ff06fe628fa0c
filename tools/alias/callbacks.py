"""Where the alias's pipeline reports: its callbacks, and the context its task runs in.

LangChain hands ``_generate``/``_agenerate`` the run manager of the alias's own
run, but calls ``_stream``/``_astream`` without one from ``stream()``/``astream()``,
and from ``invoke()`` while a streaming handler listens (``astream_events``, a
LangGraph ``"messages"`` stream): chat-model runs are leaves by design
(langchain PR #23500). The alias keeps to that:

- Given a run manager, the pipeline's runs (the ``fusion`` graph and its model
  calls) and its progress events nest under the alias's run.
- Without one, they nest under the run that called the alias (the chain, graph
  node or tool it runs in), beside the alias's run. A ``stream()`` called
  directly has no such run: the callbacks passed to it see the alias's run and
  its tokens only, and LangSmith, when tracing is on, traces the pipeline as a
  trace of its own.
"""

from __future__ import annotations

import contextvars

from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    BaseCallbackManager,
    CallbackManager,
    CallbackManagerForLLMRun,
    Callbacks,
)
from langchain_core.callbacks.usage import UsageMetadataCallbackHandler
from langchain_core.runnables import RunnableConfig, ensure_config
from langchain_core.runnables.config import set_config_context


def pipeline_callbacks(
    run_manager: CallbackManagerForLLMRun | AsyncCallbackManagerForLLMRun | None,
) -> Callbacks:
    """The callbacks of the pipeline's runs: the alias's children, else the caller's.

    Token-usage counters are left out: the alias's own message totals every
    call the pipeline made, and a counter that also saw those calls would
    count them twice.
    """
    if run_manager is not None:
        return _without_usage_counters(_children_of(run_manager))
    callbacks = ensure_config().get("callbacks")
    if isinstance(callbacks, BaseCallbackManager):
        return _without_usage_counters(callbacks.copy())  # the caller's own stays as it is
    return [h for h in callbacks or [] if not isinstance(h, UsageMetadataCallbackHandler)]


def _children_of(run: CallbackManagerForLLMRun | AsyncCallbackManagerForLLMRun) -> CallbackManager:
    # A chat-model run's manager has no get_child() (its runs are leaves by
    # design); this is the manager a chain or tool run's get_child() gives:
    # the run's inheritable handlers, tags and metadata, under the run.
    return CallbackManager(
        handlers=list(run.inheritable_handlers),
        inheritable_handlers=list(run.inheritable_handlers),
        parent_run_id=run.run_id,
        tags=list(run.inheritable_tags),
        inheritable_tags=list(run.inheritable_tags),
        metadata=dict(run.inheritable_metadata),
        inheritable_metadata=dict(run.inheritable_metadata),
    )


def _without_usage_counters(manager: BaseCallbackManager) -> BaseCallbackManager:
    for handler in list(manager.handlers) + list(manager.inheritable_handlers):
        if isinstance(handler, UsageMetadataCallbackHandler):
            manager.remove_handler(handler)
    return manager


def relays_events(callbacks: Callbacks) -> bool:
    """Whether progress events can be dispatched to ``callbacks``: they need a parent run."""
    return isinstance(callbacks, BaseCallbackManager) and callbacks.parent_run_id is not None


def pipeline_context(config: RunnableConfig) -> contextvars.Context:
    """A copy of this context for the pipeline's task, with ``config`` as its caller's config.

    The pipeline then runs as a graph of its own, nested through its callbacks
    only: the config of a runnable that called the alias (a LangGraph node's,
    with its checkpointer and its stream) is not merged into the pipeline's.
    ``get_usage_metadata_callback()`` counters, which join every run started in
    their context, are unset there, for the reason ``pipeline_callbacks`` gives.
    """
    with set_config_context(config) as entered:
        context = entered.copy()  # outlives the block, which resets what it set
    counters = [v for v, h in context.items() if isinstance(h, UsageMetadataCallbackHandler)]
    for var in counters:
        context.run(var.set, None)
    return context
