"""On-policy targets: the student answers, the teacher scores the student's own tokens.

The validator scores a miner on the teacher's distributions *along the miner's sampled answer*
(temperature 1 by default). Offline targets only cover the teacher's own greedy answers, so a
student trained on them never sees the prefixes it produces itself once it drifts. Here, from
step ``onpolicy_start`` on (offline steps first give a student worth sampling from), every
``onpolicy_every`` steps the student (its current weights, in the trainer) samples answers to a
fresh draw of the training prompts at the validator's temperature, the teacher teacher-forces
them through the engine seam (``Engine.score``: vLLM or transformers) and the next steps train
on those positions with the same sparse forward-KL loss, as a share ``onpolicy_ratio`` of every
batch (the rest stays offline).

Everything is a function of the run's seed, the round and the pool index (prompt choice and one
sampling RNG per answer), so the pool does not depend on how many processes share the work:
under DDP each rank samples and scores every ``world``-th answer and the parts are gathered.
The pool is saved with each checkpoint, so a resumed run continues on the same samples.

The trainer is synchronous and gets a blocking ``score`` (:mod:`distill.live_teacher` makes
one from an engine on an event loop).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from distill.distributed import Dist
from distill.schedule import batch_indices
from distill.shards import Example, TargetsError, TargetSet

if TYPE_CHECKING:
    from distill.train_config import TrainConfig
    from subnet.engine import Scored

#: ``score(prompts, completions, k)``: the teacher's top-k along each completion (blocking).
TeacherScore = Callable[[list[list[int]], list[list[int]], int], "list[Scored]"]

#: Stream id of the on-policy prompt draw (the offline batch order uses the plain seed).
PROMPT_STREAM = 1


@dataclass(frozen=True)
class Pool:
    """One round's on-policy examples, in pool order (the same on every rank)."""

    round: int
    examples: list[Example]


def sample_seed(seed: int, round_: int, index: int) -> int:
    """The sampling RNG seed of pool entry ``index`` of ``round_``."""
    return int(np.random.SeedSequence([seed, round_, index]).generate_state(1)[0])


def eos_ids(model: Any) -> set[int]:
    """Every id that ends an answer (config and generation config; one id or a list)."""
    out: set[int] = set()
    for cfg in (getattr(model, "config", None), getattr(model, "generation_config", None)):
        value = getattr(cfg, "eos_token_id", None)
        out |= {value} if isinstance(value, int) else set(value or ())
    if not out:
        raise TargetsError("the student's config names no eos_token_id")
    return out


@torch.no_grad()
def sample(
    model: Any,
    prompts: Sequence[Sequence[int]],
    seeds: Sequence[int],
    *,
    temperature: float,
    max_tokens: int,
    eos: set[int],
    device: torch.device,
    lockstep: Dist | None = None,
) -> list[list[int]]:
    """Sampled completions (EOS included when reached), one torch.Generator per row.

    ``lockstep``: keep stepping until every rank is done (FSDP: each forward is collective).
    """
    width = max(len(p) for p in prompts)
    ids = torch.zeros((len(prompts), width), dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, width - len(p) :] = torch.tensor(list(p), dtype=torch.long)
        mask[i, width - len(p) :] = 1
    ids, mask = ids.to(device), mask.to(device)
    positions = (mask.cumsum(-1) - 1).clamp_min(0)
    generators = [torch.Generator().manual_seed(s) for s in seeds]
    out: list[list[int]] = [[] for _ in prompts]
    done = [False] * len(prompts)
    past, step_ids = None, ids
    was_training = model.training
    model.eval()
    autocast = device.type == "cuda"
    for _ in range(max_tokens):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            res = model(
                input_ids=step_ids,
                attention_mask=mask,
                position_ids=positions,
                past_key_values=past,
                use_cache=True,
            )
        past, logits = res.past_key_values, res.logits[:, -1].float().cpu()
        if temperature == 0:
            tokens = logits.argmax(-1).tolist()
        else:
            probs = torch.softmax(logits / temperature, dim=-1)
            tokens = [
                int(torch.multinomial(probs[i], 1, generator=g)) for i, g in enumerate(generators)
            ]
        for i, t in enumerate(tokens):
            if not done[i]:
                out[i].append(t)
                done[i] = t in eos
        finished = all(done)
        if lockstep is not None:
            finished = not lockstep.any(not finished)
        if finished:
            break
        step_ids = torch.tensor(tokens, dtype=torch.long, device=device)[:, None]
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
        positions = positions[:, -1:] + 1
    model.train(was_training)
    return out


class OnPolicy:
    """Builds and serves the on-policy share of each batch (see the module docstring)."""

    def __init__(
        self, score: TeacherScore, targets: TargetSet, n_prompts: int, cfg: TrainConfig, k: int
    ) -> None:
        self.score, self.targets, self.n_prompts, self.cfg, self.k = (
            score,
            targets,
            n_prompts,
            cfg,
            k,
        )
        self.per_step = cfg.onpolicy_per_step(cfg.onpolicy_start)
        self.max_tokens = cfg.onpolicy_max_tokens or int(
            targets.manifest["request"].get("max_tokens", 32)
        )
        self.pool: Pool | None = None

    def examples(self, step: int, model: Any, dist: Dist, lockstep: bool) -> list[Example]:
        """The on-policy examples of global step ``step`` (refreshing the pool if due)."""
        every, since = self.cfg.onpolicy_every, step - self.cfg.onpolicy_start
        round_ = since // every
        if self.pool is None or self.pool.round != round_:
            self.pool = self._build(round_, model, dist, lockstep)
        start = (since % every) * self.per_step
        return self.pool.examples[start : start + self.per_step]

    def _build(self, round_: int, model: Any, dist: Dist, lockstep: bool) -> Pool:
        size = self.cfg.onpolicy_every * self.per_step
        chosen = batch_indices(round_, self.n_prompts, size, self.cfg.seed, stream=PROMPT_STREAM)
        mine = dist.share(list(enumerate(chosen)))
        if lockstep:  # every rank runs the same number of forward passes
            mine += mine[:1] * (-(-size // dist.world) - len(mine))
        prompts = []
        for _, i in mine:
            e = self.targets[i]
            prompts.append([int(t) for t in e.tokens[: e.prompt_len]])
        completions = sample(
            model,
            prompts,
            [sample_seed(self.cfg.seed, round_, j) for j, _ in mine],
            temperature=self.cfg.onpolicy_temperature,
            max_tokens=self.max_tokens,
            eos=eos_ids(getattr(model, "module", model)),
            device=dist.device,
            lockstep=dist if lockstep else None,
        )
        scored = self.score(prompts, completions, self.k)
        part = {
            j: Example(
                tokens=np.asarray([*p, *c], dtype=np.int32),
                prompt_len=len(p),
                top_ids=np.asarray(s.top_ids[:, : self.k], dtype=np.int32),
                top_logprobs=np.minimum(s.top_logprobs[:, : self.k], 0.0).astype(np.float32),
            )
            for (j, _), p, c, s in zip(mine, prompts, completions, scored, strict=True)
        }
        merged: dict[int, Example] = {}
        for got in dist.gather(list(part.items())):
            merged.update(got)
        return Pool(round_, [merged[j] for j in range(size)])
