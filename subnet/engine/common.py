"""What both engines share: model facts read from the checkpoint and request validation.

Both engines read the same ``config.json`` / ``generation_config.json`` here, so they agree on
vocabulary size, EOS and the usable context length, and both reject the same bad requests with
the same :class:`EngineInputError` *before* anything reaches the model (which stays usable).

No torch or vllm import: this module is safe to import anywhere.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from subnet.engine.types import (
    MIN_TEMPERATURE,
    MIN_TOP_P,
    EngineInfo,
    EngineInputError,
    SamplingParams,
    TokenIds,
)
from subnet.errors import EngineError

# Largest top-k the engines report unless told otherwise (vLLM's own default max_logprobs).
DEFAULT_MAX_TOP_LOGPROBS = 20


@dataclass(frozen=True)
class ModelFacts:
    vocab_size: int
    # Every id that ends a sequence, in the checkpoint's order (Llama 3 / Qwen instruct models
    # have several: end of text, end of turn, ...).
    eos_token_ids: tuple[int, ...]
    # Usable context (prompt + completion). One below the position limit: vLLM needs room for
    # one generated token after a scored sequence, so it runs with max_model_len + 1.
    max_model_len: int
    dtype: str  # checkpoint dtype ("float32", "bfloat16"), the default for both engines
    # Gemma 2's attention-logit soft cap: transformers' SDPA attention ignores it (the hf
    # engine runs eager attention for such models; vLLM applies it).
    attn_softcap: float | None = None


def _read_json(path: Path) -> dict[str, object]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise EngineError(f"cannot read {path}: {e}") from e
    return data if isinstance(data, dict) else {}


def _first_int(value: object) -> int | None:
    if isinstance(value, list) and value:
        value = value[0]
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def check_weight_files(path: Path) -> None:
    """Every ``*.safetensors`` file's header and size are sound (reads headers only).

    Both engines would otherwise fail deep inside their loaders (transformers with a
    ``SafetensorError`` traceback, vLLM in its engine process) on a truncated or overwritten
    file; this names the file instead.
    """
    from safetensors import safe_open

    for f in sorted(path.glob("*.safetensors")):
        try:
            with safe_open(str(f), "np"):
                pass
        except Exception as e:  # SafetensorError (a bare Exception subclass), OSError
            raise EngineError(
                f"{f} is not a readable safetensors file ({e}): copy the model again"
            ) from None


def _int_list(value: object) -> tuple[int, ...] | None:
    """An int or a list of ints (``eos_token_id`` takes both forms); None if absent or bad."""
    items = value if isinstance(value, list) else [value]
    if not items or any(isinstance(v, bool) or not isinstance(v, int) for v in items):
        return None
    return tuple(dict.fromkeys(v for v in items if isinstance(v, int)))  # de-duplicated, in order


def read_model_facts(model_path: str | Path, max_model_len: int | None = None) -> ModelFacts:
    """Vocabulary, EOS ids and context length of an HF-format model directory (weights checked).

    EOS ids are those ``generation_config.json`` stops on (what transformers' ``generate`` and
    vLLM stop on), else ``config.json``'s; either may hold one id or a list.
    """
    path = Path(model_path)
    config = _read_json(path / "config.json")
    if not config:
        raise EngineError(f"{path} is not an HF model directory (no readable config.json)")
    check_weight_files(path)
    text = config.get("text_config")
    if isinstance(text, dict):  # multimodal wrappers nest the language model config
        config = {**config, **text}
    gen = _read_json(path / "generation_config.json")
    vocab = _first_int(config.get("vocab_size"))
    eos = _int_list(gen["eos_token_id"]) if "eos_token_id" in gen else None
    if eos is None:
        eos = _int_list(config.get("eos_token_id"))
    positions = _first_int(config.get("max_position_embeddings"))
    if vocab is None or eos is None or positions is None:
        raise EngineError(f"{path}/config.json lacks vocab_size, eos_token_id or positions")
    if not all(0 <= e < vocab for e in eos):
        raise EngineError(f"{path}: eos_token_id {list(eos)} outside the vocabulary [0, {vocab})")
    limit = positions - 1
    if max_model_len is not None:
        if not 2 <= max_model_len <= limit:
            raise EngineError(f"max_model_len {max_model_len} outside [2, {limit}] for {path}")
        limit = max_model_len
    dtype = config.get("dtype") or config.get("torch_dtype") or "float32"
    softcap = config.get("attn_logit_softcapping")
    return ModelFacts(
        vocab_size=vocab,
        eos_token_ids=eos,
        max_model_len=limit,
        dtype=str(dtype),
        attn_softcap=float(softcap) if isinstance(softcap, int | float) and softcap else None,
    )


def _check_ids(info: EngineInfo, ids: TokenIds, what: str) -> None:
    for t in ids:
        if isinstance(t, bool) or not isinstance(t, numbers.Integral):
            raise EngineInputError(f"{what}: token id {t!r} is not an integer")
        if not 0 <= int(t) < info.vocab_size:
            raise EngineInputError(f"{what}: token id {t} outside [0, {info.vocab_size})")


def _check_k(info: EngineInfo, k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= info.max_top_logprobs:
        raise EngineInputError(f"top-k {k!r} outside [0, {info.max_top_logprobs}]")


def _check_prompts(info: EngineInfo, prompts: Sequence[TokenIds]) -> None:
    if not prompts:
        raise EngineInputError("no prompts")
    for i, prompt in enumerate(prompts):
        if len(prompt) == 0:
            raise EngineInputError(f"prompt {i} is empty")
        _check_ids(info, prompt, f"prompt {i}")


def validate_generate(
    info: EngineInfo, prompts: Sequence[TokenIds], params: SamplingParams
) -> None:
    """Raise EngineInputError for anything the engines would choke on or silently clip."""
    _check_prompts(info, prompts)
    _check_k(info, params.top_logprobs)
    if isinstance(params.max_tokens, bool) or params.max_tokens < 1:
        raise EngineInputError(f"max_tokens {params.max_tokens!r} must be >= 1")
    t = params.temperature
    if not (math.isfinite(t) and (t == 0 or t >= MIN_TEMPERATURE)):
        raise EngineInputError(f"temperature {t!r} must be 0 (greedy) or >= {MIN_TEMPERATURE}")
    if not (math.isfinite(params.top_p) and MIN_TOP_P <= params.top_p <= 1):
        raise EngineInputError(f"top_p {params.top_p!r} outside [{MIN_TOP_P:g}, 1]")
    if params.seed is not None and not 0 <= params.seed < 2**63 - 2**20:
        raise EngineInputError(f"seed {params.seed!r} outside [0, 2**63 - 2**20)")
    for i, prompt in enumerate(prompts):
        if len(prompt) + params.max_tokens > info.max_model_len:
            raise EngineInputError(
                f"prompt {i}: {len(prompt)} tokens + max_tokens {params.max_tokens} "
                f"exceeds max_model_len {info.max_model_len}"
            )


def validate_score(
    info: EngineInfo,
    prompts: Sequence[TokenIds],
    completions: Sequence[TokenIds],
    k: int,
) -> list[tuple[list[int], list[int]]]:
    """Check a ``score`` request; the (prompt, completion) pairs as plain int lists."""
    _check_prompts(info, prompts)
    _check_k(info, k)
    if len(completions) != len(prompts):
        raise EngineInputError(f"{len(prompts)} prompts but {len(completions)} completions")
    for i, (prompt, completion) in enumerate(zip(prompts, completions, strict=True)):
        _check_ids(info, completion, f"completion {i}")
        if len(prompt) + len(completion) > info.max_model_len:
            raise EngineInputError(
                f"pair {i}: {len(prompt)} + {len(completion)} tokens exceeds "
                f"max_model_len {info.max_model_len}"
            )
    return [
        ([int(t) for t in p], [int(t) for t in c])
        for p, c in zip(prompts, completions, strict=True)
    ]


def prompt_seed(seed: int | None, index: int) -> int | None:
    """Seed of the index-th prompt of a batch: distinct per prompt, fixed per (seed, index)."""
    return None if seed is None else seed + index
