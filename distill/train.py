"""Train a student on a teacher's sparse top-K targets (``subnet distill train``).

The loop follows nanochat's ``base_train.py`` shape inside one function: setup in commented
stages, one ``while True`` with a ``last_step`` flag, the once-in-a-while blocks (eval,
checkpoint) before the step, logging after it. Everything the loop depends on is either in the
checkpoint (weights, optimizer moments, step) or a pure function of the step (the batch order,
the learning rate), so a resumed run ends with the same weights as an uninterrupted one.

The loss is ``distill.losses.distill_loss``: the validator's forward KL on the teacher's top-K
plus tail, optionally mixed with cross-entropy on the teacher's tokens. The held-out number is
the validator's own ``scoring.divergence.forward_kl``, with the student reporting its top-K like
a miner does, averaged per answer and then over answers.
"""

from __future__ import annotations

import gc
import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from distill.checkpoints import CHECKPOINT_FORMAT, load_checkpoint, save_checkpoint, save_final
from distill.distributed import Dist, dist_session, wrap
from distill.losses import distill_loss
from distill.onpolicy import OnPolicy, TeacherScore
from distill.schedule import batch_indices, lr_factor
from distill.shards import Example, TargetsError, TargetSet, tokenizer_hash
from distill.torch_state import deterministic_torch
from distill.train_config import TrainConfig, TrainResult

__all__ = ["TrainConfig", "TrainResult", "batch_indices", "lr_factor", "train"]


def check_compatible(student: Path, targets: TargetSet, k: int) -> None:
    """Refuse before training what cannot work; each message names the mismatch."""
    ours = tokenizer_hash(student)
    if ours != targets.tokenizer_hash:
        raise TargetsError(
            f"tokenizer mismatch: the student {student} has tokenizer {ours[:12]}, the targets "
            f"were made with the teacher's {targets.tokenizer_hash[:12]} "
            f"({targets.manifest['teacher']['path']}); a student must share the teacher's ids"
        )
    config = json.loads((student / "config.json").read_text())
    if config.get("vocab_size") != targets.vocab_size:
        raise TargetsError(
            f"vocab mismatch: student vocab_size {config.get('vocab_size')}, "
            f"teacher {targets.vocab_size}"
        )
    if k > targets.k:
        raise TargetsError(f"k={k} is larger than the {targets.k} stored in {targets.root}")


def open_inputs(
    student: Path, targets_dir: str | Path, cfg: TrainConfig, verify: bool = True
) -> tuple[TargetSet, int, int]:
    """The targets, the k to train with and how many sequences train (the rest is held out);
    every mismatch refused with one message before any compute."""
    targets = TargetSet(targets_dir, verify=verify)
    k = cfg.k or targets.k
    check_compatible(Path(student), targets, k)
    n_train = len(targets) - min(cfg.eval_sequences, len(targets) // 10)
    if n_train < 1:
        raise TargetsError(f"{targets_dir}: too few sequences to train on ({len(targets)})")
    return targets, k, n_train


def collate(examples: Sequence[Example], k: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Right-padded ids and mask, plus the teacher targets at the positions that predict them.

    Completion token j of a sequence (at index p + j) is predicted by the logits at p + j - 1;
    ``scored`` marks those positions, and the target tensors are their rows in order.
    """
    width = max(len(e.tokens) for e in examples)
    ids = torch.zeros((len(examples), width), dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    scored = torch.zeros((len(examples), width), dtype=torch.bool)
    for i, e in enumerate(examples):
        ids[i, : len(e.tokens)] = torch.from_numpy(e.tokens.astype(np.int64))
        mask[i, : len(e.tokens)] = 1
        scored[i, e.prompt_len - 1 : len(e.tokens) - 1] = True

    def cat(arrays: list[np.ndarray], dtype: type) -> torch.Tensor:
        return torch.from_numpy(np.concatenate(arrays).astype(dtype)).to(device)

    return {
        "ids": ids.to(device),
        "mask": mask.to(device),
        "scored": scored.to(device),
        "top_ids": cat([e.top_ids[:, :k] for e in examples], np.int64),
        "top_lp": cat([e.top_logprobs[:, :k] for e in examples], np.float32),
        "targets": cat([e.tokens[e.prompt_len :] for e in examples], np.int64),
    }


def scored_logits(model: Any, batch: dict[str, torch.Tensor], autocast: bool) -> torch.Tensor:
    """Logits ``[N, V]`` at the scored positions, in target order.

    The LM head runs only on the columns where some row is scored (``logits_to_keep`` with
    their indices): at a 129k-id vocabulary the head is most of the compute and the
    ``[B, T, V]`` logits most of the memory, and prompt columns need neither.
    """
    keep = batch["scored"].any(dim=0).nonzero()[:, 0]
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
        logits = model(
            input_ids=batch["ids"], attention_mask=batch["mask"], logits_to_keep=keep
        ).logits
    out: torch.Tensor = logits[batch["scored"][:, keep]].float()
    return out


#: Logits held at once by :func:`evaluate_kl` (floats): 64 sequences at the tiny world's
#: vocabulary, a few at a 129k-id one, so held-out evaluation never needs gigabytes.
EVAL_LOGITS_BUDGET = 1 << 25


@torch.no_grad()
def evaluate_kl(
    model: Any,
    examples: Sequence[Example],
    k: int,
    vocab_size: int,
    device: torch.device,
    autocast: bool,
    batch: int = 64,
    dist: Dist | None = None,
) -> float:
    """Held-out ``scoring.divergence.forward_kl``: student top-k vs teacher top-k per answer.

    With several ranks each scores every ``world``-th answer, padded to the same number of
    forward passes (FSDP runs them in lock-step), and the per-answer numbers are gathered.
    """
    from scoring.divergence import forward_kl

    dist = dist or Dist(device=device)
    mine = dist.share(list(enumerate(examples)))
    n_real = len(mine)
    mine += mine[:1] * (-(-len(examples) // dist.world) - len(mine))
    model.eval()
    width = max((len(e.tokens) for e in examples), default=1)
    batch = max(1, min(batch, EVAL_LOGITS_BUDGET // (width * vocab_size)))
    per_answer: list[tuple[int, float]] = []
    for start in range(0, len(mine), batch):
        chunk = mine[start : start + batch]
        b = collate([e for _, e in chunk], k, device)
        logprobs = torch.log_softmax(scored_logits(model, b, autocast).double(), dim=-1)
        s_lp, s_ids = logprobs.topk(k, dim=-1)
        del logprobs
        kl = forward_kl(
            b["top_ids"].cpu().numpy(),
            b["top_lp"].cpu().numpy(),
            s_ids.cpu().numpy(),
            s_lp.cpu().numpy(),
            vocab_size,
        )
        lengths = [len(e.tokens) - e.prompt_len for _, e in chunk]
        parts = np.split(kl, np.cumsum(lengths)[:-1])
        per_answer += [(i, float(part.mean())) for (i, _), part in zip(chunk, parts, strict=True)]
    model.train()
    gathered = dict(kv for got in dist.gather(per_answer[:n_real]) for kv in got)
    return float(np.mean([gathered[i] for i in range(len(examples))]))


def load_student(student: Path) -> Any:
    """The student's weights if the folder has any, else a fresh init from its config (drawn
    from torch's global RNG: :func:`train` seeds it for the run)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    if any(student.glob("*.safetensors")) or any(student.glob("*.bin")):
        return AutoModelForCausalLM.from_pretrained(str(student), dtype=torch.float32)
    config = AutoConfig.from_pretrained(str(student))
    return AutoModelForCausalLM.from_config(config, dtype=torch.float32)  # type: ignore[no-untyped-call]


# -- the loop ---------------------------------------------------------------------------------


def train(
    student: str | Path,
    targets_dir: str | Path,
    out: str | Path,
    cfg: TrainConfig,
    *,
    log: Callable[[str], None] = print,
    progress: bool = True,
    name: str | None = None,
    teacher_score: TeacherScore | None = None,
    stop: threading.Event | None = None,
) -> TrainResult:
    """Distil ``targets_dir`` into the student at ``student``; write the result to ``out``.

    ``name`` goes into the identity payload (default: the folder name). Reruns of an
    interrupted call with the same arguments resume from the newest checkpoint. Under
    ``torchrun`` every process calls this with the same arguments: each trains on its share
    of the global batch ``cfg.batch`` and rank 0 writes. ``teacher_score`` (needed when
    ``cfg.onpolicy_ratio > 0``) scores the student's samples: see :mod:`distill.onpolicy`.
    ``stop``, once set, ends the run before the next step (KeyboardInterrupt), for callers
    that run it in a worker thread.
    """
    student, out = Path(student), Path(out)
    # Inputs: open and check everything before any compute.
    targets, k, n_train = open_inputs(student, targets_dir, cfg)
    per_on = cfg.onpolicy_per_step(cfg.steps - 1)
    if per_on and teacher_score is None:
        raise TargetsError("onpolicy_ratio > 0 needs a teacher to score the student's samples")
    held_out = [targets[i] for i in range(n_train, len(targets))]

    # Compute: bf16 autocast on CUDA, fp32 on CPU; deterministic kernels, seeded init, a fixed
    # thread count, all for this run only (the caller's torch settings are restored after);
    # under torchrun, this process's share of the work (joined and left here).
    threads = cfg.threads or max(1, len(os.sched_getaffinity(0)))
    with deterministic_torch(cfg.seed, threads), dist_session(cfg.device) as dist:
        if cfg.batch < dist.world:
            raise TargetsError(f"batch {cfg.batch} is smaller than the {dist.world} processes")
        say = log if dist.main else (lambda _: None)
        device, autocast = dist.device, dist.device.type == "cuda"
        raw = load_student(student).to(device).train()
        model = wrap(raw, dist, cfg.parallel)
        # DDP: sampling and evaluation run on the unwrapped replica, no collective needed.
        # FSDP: every forward pass is collective, so those loops run in lock-step.
        lockstep = dist.world > 1 and cfg.parallel == "fsdp"
        local = model if lockstep else raw
        onpolicy = (
            OnPolicy(teacher_score, targets, n_train, cfg, k)
            if per_on and teacher_score is not None
            else None
        )

        # Optimizer, and resume from the newest checkpoint if there is one.
        opt = torch.optim.AdamW(
            model.parameters(), lr=cfg.lr, betas=(0.9, cfg.beta2), weight_decay=cfg.weight_decay
        )
        meta = {
            "config": asdict(cfg),
            "targets": targets.manifest["request"],
            "student": str(student),
            "checkpoint_format": CHECKPOINT_FORMAT,
        }
        start, pool = load_checkpoint(out, model, opt, meta, dist)
        if onpolicy is not None:
            onpolicy.pool = pool
        if start:
            say(f"resuming from step {start}")

        from rich.progress import Progress, TextColumn

        columns = [
            *Progress.get_default_columns(),
            TextColumn("loss {task.fields[loss]} | {task.fields[rate]} tok/s"),
        ]
        step, tokens, eval_kl = start, 0, float("nan")
        recent: list[float] = []
        t0 = time.monotonic()
        with Progress(*columns, disable=not (progress and dist.main)) as bar:
            task = bar.add_task("distill", total=cfg.steps, completed=start, loss="-", rate="-")
            while True:
                last_step = step == cfg.steps
                # Once in a while: held-out divergence, checkpoint.
                if last_step or (cfg.eval_every > 0 and step > 0 and step % cfg.eval_every == 0):
                    eval_kl = evaluate_kl(
                        local, held_out, k, targets.vocab_size, device, autocast, dist=dist
                    )
                    say(f"step {step}: held-out forward KL {eval_kl:.4f}")
                if step > start and (
                    last_step or (cfg.save_every > 0 and step % cfg.save_every == 0)
                ):
                    save_checkpoint(
                        out,
                        step,
                        model,
                        opt,
                        meta,
                        cfg.keep_checkpoints,
                        dist,
                        onpolicy.pool if onpolicy is not None else None,
                    )
                if last_step:
                    break
                if stop is not None and stop.is_set():
                    raise KeyboardInterrupt

                # One step: the global batch (offline, then on-policy) is the same on every
                # rank; each trains on its share, weighted so the average over ranks is the
                # mean over every scored position of the global batch.
                offline = cfg.batch - cfg.onpolicy_per_step(step)
                examples = [targets[i] for i in batch_indices(step, n_train, offline, cfg.seed)]
                if onpolicy is not None and offline < cfg.batch:
                    examples += onpolicy.examples(step, local, dist, lockstep)
                mine = dist.share(examples)
                batch = collate(mine, k, device)
                positions = sum(len(e.tokens) - e.prompt_len for e in examples)
                share = int(batch["targets"].numel()) * dist.world / positions
                for group in opt.param_groups:
                    group["lr"] = cfg.lr * lr_factor(step, cfg)
                loss, kl = distill_loss(
                    scored_logits(model, batch, autocast),
                    batch["top_ids"],
                    batch["top_lp"],
                    batch["targets"],
                    torch.ones_like(batch["targets"]),
                    cfg.ce_weight,
                )
                shown = loss.item()
                opt.zero_grad(set_to_none=True)
                (loss * share if dist.world > 1 else loss).backward()  # type: ignore[no-untyped-call]
                if cfg.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                opt.step()

                # Logging (CPU side): the global batch's KL and tokens.
                step += 1
                tokens += sum(len(e.tokens) for e in examples)
                kl_global = dist.all_sum([float(kl) * share / dist.world])[0]
                recent = [*recent[-max(1, cfg.steps // 10) + 1 :], kl_global]
                rate = tokens / max(time.monotonic() - t0, 1e-9)
                bar.update(task, advance=1, loss=f"{shown:.4f}", rate=f"{rate:,.0f}")

        elapsed = time.monotonic() - t0
        meta["eval_forward_kl"] = eval_kl
        if dist.main:
            out.mkdir(parents=True, exist_ok=True)
        identity = save_final(out, student, model, meta, dist, name)
        say(f"saved {out} ({identity})")
        # Free the DDP/FSDP wrapper here, while every rank is still in the group: its reducer
        # holds the process group, and freed only after the group was destroyed (when this
        # function returned), gloo's destructor waited forever on a rank that had exited
        # (seen in CI: rank 0 hung in ~ProcessGroupGloo after all 200 steps were saved).
        del model, local, raw, opt
        gc.collect()
        dist.barrier()
    return TrainResult(
        out=out,
        steps=cfg.steps,
        train_kl=float(np.mean(recent or [np.nan])),
        eval_kl=eval_kl,
        train_tokens_per_s=tokens / max(elapsed, 1e-9),
        identity=identity,
    )
