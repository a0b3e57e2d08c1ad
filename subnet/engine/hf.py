"""The transformers engine: batched generation with a KV cache and one-pass teacher forcing.

The fast path on CPU (no 40 s vLLM start) and a second opinion next to vLLM. Reported
distributions are ``log_softmax`` of the raw fp32 logits; temperature and top-p only shape the
sampling. Each call runs in a worker thread under one thread lock: calls are serialized (from
any event loop or thread), each one batched.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
import transformers
from transformers import AutoModelForCausalLM

from subnet.engine.common import (
    DEFAULT_MAX_TOP_LOGPROBS,
    prompt_seed,
    read_model_facts,
    validate_generate,
    validate_score,
)
from subnet.engine.types import (
    Completion,
    EngineInfo,
    Provenance,
    SamplingParams,
    Scored,
    TokenIds,
)
from subnet.errors import EngineError

T = TypeVar("T")


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return str(device)


def _left_pad(rows: Sequence[Sequence[int]], device: torch.device) -> tuple[torch.Tensor, ...]:
    """Token ids, attention mask and position ids of left-padded rows (pads are masked out)."""
    width = max(len(r) for r in rows)
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        if r:
            ids[i, width - len(r) :] = torch.tensor(list(r), dtype=torch.long)
            mask[i, width - len(r) :] = 1
    positions = (mask.cumsum(-1) - 1).clamp_min(0)
    return ids.to(device), mask.to(device), positions.to(device)


def _sample(
    logits: torch.Tensor, params: SamplingParams, generators: list[torch.Generator | None]
) -> torch.Tensor:
    """One token per row: argmax at temperature 0, else temperature + top-p with the row's RNG."""
    if params.temperature == 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits / params.temperature, dim=-1)
    if params.top_p < 1:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        before = sorted_probs.cumsum(-1) - sorted_probs  # mass strictly above each token
        sorted_probs = sorted_probs.masked_fill(before >= params.top_p, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    out = [
        torch.multinomial(probs[i].cpu(), 1, generator=g).to(logits.device)
        for i, g in enumerate(generators)
    ]
    return torch.cat(out)


class HFEngine:
    """transformers + torch on CPU or CUDA; see the module docstring."""

    def __init__(
        self,
        model_path: str | Path,
        *,
        dtype: str | None = None,
        device: str | None = None,
        max_model_len: int | None = None,
        max_top_logprobs: int = DEFAULT_MAX_TOP_LOGPROBS,
    ) -> None:
        facts = read_model_facts(model_path, max_model_len)
        dtype = dtype or facts.dtype
        torch_dtype = getattr(torch, dtype, None)
        if not isinstance(torch_dtype, torch.dtype):
            raise EngineError(f"unknown dtype {dtype!r}")
        self._device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        try:
            model = AutoModelForCausalLM.from_pretrained(str(model_path), dtype=torch_dtype)
        except (OSError, ValueError) as e:
            raise EngineError(f"cannot load {model_path} with transformers: {e}") from e
        self._model = model.to(self._device).eval()  # type: ignore[arg-type]
        self._eos = facts.eos_token_id
        self._info = EngineInfo(
            vocab_size=facts.vocab_size,
            eos_token_id=facts.eos_token_id,
            max_model_len=facts.max_model_len,
            max_top_logprobs=max_top_logprobs,
            provenance=Provenance(
                engine="hf",
                version=f"transformers {transformers.__version__}, torch {torch.__version__}",
                dtype=dtype,
                device=_device_name(self._device),
                model=str(model_path),
            ),
        )
        # A thread lock, not an asyncio one: callers may live on different event loops.
        self._lock = threading.Lock()

    @property
    def info(self) -> EngineInfo:
        return self._info

    async def generate(
        self, prompts: Sequence[TokenIds], params: SamplingParams
    ) -> list[Completion]:
        validate_generate(self._info, prompts, params)
        rows = [[int(t) for t in p] for p in prompts]
        return await asyncio.to_thread(self._locked, self._generate, rows, params)

    async def score(
        self,
        prompts: Sequence[TokenIds],
        completions: Sequence[TokenIds],
        k: int,
    ) -> list[Scored]:
        validate_score(self._info, prompts, completions, k)
        pairs = [
            ([int(t) for t in p], [int(t) for t in c])
            for p, c in zip(prompts, completions, strict=True)
        ]
        return await asyncio.to_thread(self._locked, self._score, pairs, k)

    async def close(self) -> None:
        await asyncio.to_thread(self._locked, self._release)

    # -- worker-thread side --------------------------------------------------------------

    def _locked(self, fn: Callable[..., T], *args: Any) -> T:
        with self._lock:
            return fn(*args)

    def _release(self) -> None:
        self._model = None
        if self._device.type == "cuda":
            torch.cuda.empty_cache()

    @torch.inference_mode()
    def _generate(self, rows: list[list[int]], params: SamplingParams) -> list[Completion]:
        if self._model is None:
            raise EngineError("engine is closed")
        n, k = len(rows), params.top_logprobs
        generators: list[torch.Generator | None] = []
        for i in range(n):
            seed = prompt_seed(params.seed, i)
            generators.append(None if seed is None else torch.Generator().manual_seed(seed))
        ids, mask, positions = _left_pad(rows, self._device)
        out = self._model(input_ids=ids, attention_mask=mask, position_ids=positions)
        past = out.past_key_values
        logits = out.logits[:, -1].float()
        tokens: list[torch.Tensor] = []
        sampled_lp: list[torch.Tensor] = []
        top_ids: list[torch.Tensor] = []
        top_lp: list[torch.Tensor] = []
        done = torch.zeros(n, dtype=torch.bool, device=self._device)
        for step in range(params.max_tokens):
            logprobs = torch.log_softmax(logits, dim=-1)
            token = _sample(logits, params, generators)
            tokens.append(token)
            sampled_lp.append(logprobs.gather(-1, token[:, None])[:, 0])
            values, indices = logprobs.topk(k, dim=-1)
            top_lp.append(values)
            top_ids.append(indices)
            if not params.ignore_eos:
                done |= token == self._eos
                if bool(done.all()):
                    break
            if step + 1 == params.max_tokens:
                break
            mask = torch.cat([mask, torch.ones((n, 1), dtype=mask.dtype, device=mask.device)], 1)
            positions = positions[:, -1:] + 1
            out = self._model(
                input_ids=token[:, None],
                attention_mask=mask,
                position_ids=positions,
                past_key_values=past,
                use_cache=True,
            )
            past = out.past_key_values
            logits = out.logits[:, -1].float()
        all_tokens = torch.stack(tokens, 1).cpu().numpy().astype(np.int64)
        all_lp = torch.stack(sampled_lp, 1).cpu().numpy().astype(np.float32)
        all_top_ids = torch.stack(top_ids, 1).cpu().numpy().astype(np.int64)
        all_top_lp = torch.stack(top_lp, 1).cpu().numpy().astype(np.float32)
        results = []
        for i in range(n):
            length, reason = all_tokens.shape[1], "length"
            if not params.ignore_eos:
                stops = np.flatnonzero(all_tokens[i] == self._eos)
                if stops.size:
                    length, reason = int(stops[0]) + 1, "stop"
            results.append(
                Completion(
                    token_ids=all_tokens[i, :length].copy(),
                    sampled_logprobs=all_lp[i, :length].copy(),
                    top_ids=all_top_ids[i, :length].copy(),
                    top_logprobs=all_top_lp[i, :length].copy(),
                    finish_reason=reason,
                    provenance=self._info.provenance,
                )
            )
        return results

    @torch.inference_mode()
    def _score(self, pairs: list[tuple[list[int], list[int]]], k: int) -> list[Scored]:
        if self._model is None:
            raise EngineError("engine is closed")
        ids, mask, positions = _left_pad([p + c for p, c in pairs], self._device)
        # Left padding puts every completion at the end of its row: keep only those logits.
        keep = max(len(c) for _, c in pairs) + 1
        out = self._model(
            input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=keep
        )
        results = []
        for i, (_, completion) in enumerate(pairs):
            p = len(completion)
            # Position j of the completion is predicted by the logits one step before it.
            logits = out.logits[i, keep - 1 - p : keep - 1].float()
            logprobs = torch.log_softmax(logits, dim=-1)
            target = torch.tensor(completion, dtype=torch.long, device=self._device)
            target_lp = logprobs.gather(-1, target[:, None])
            ranks = 1 + (logprobs > target_lp).sum(-1)
            values, indices = logprobs.topk(k, dim=-1)
            results.append(
                Scored(
                    top_ids=indices.cpu().numpy().astype(np.int64),
                    top_logprobs=values.cpu().numpy().astype(np.float32),
                    target_logprobs=target_lp[:, 0].cpu().numpy().astype(np.float32),
                    target_ranks=ranks.cpu().numpy().astype(np.int64),
                    eos_logprobs=logprobs[:, self._eos].cpu().numpy().astype(np.float32),
                    provenance=self._info.provenance,
                )
            )
        return results
