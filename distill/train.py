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

import json
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from distill.identity import identity_for
from distill.losses import distill_loss
from distill.shards import Example, TargetsError, TargetSet, tokenizer_hash
from distill.torch_state import deterministic_torch
from distill.train_config import TrainConfig, TrainResult

__all__ = ["TrainConfig", "TrainResult", "train"]

COPY_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "generation_config.json",
)


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


def lr_factor(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.min_lr_frac + (1 - cfg.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * progress))


def batch_indices(step: int, n: int, batch: int, seed: int) -> list[int]:
    """Sequences of step ``step``: a seeded permutation per epoch, a pure function of step."""
    lo, hi = step * batch, (step + 1) * batch
    out: list[int] = []
    for epoch in range(lo // n, (hi - 1) // n + 1):
        perm = np.random.default_rng([seed, epoch]).permutation(n)
        out += perm[max(lo - epoch * n, 0) : min(hi - epoch * n, n)].tolist()
    return out


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
) -> float:
    """Held-out ``scoring.divergence.forward_kl``: student top-k vs teacher top-k per answer."""
    from scoring.divergence import forward_kl

    model.eval()
    width = max((len(e.tokens) for e in examples), default=1)
    batch = max(1, min(batch, EVAL_LOGITS_BUDGET // (width * vocab_size)))
    per_answer: list[float] = []
    for start in range(0, len(examples), batch):
        chunk = examples[start : start + batch]
        b = collate(chunk, k, device)
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
        lengths = [len(e.tokens) - e.prompt_len for e in chunk]
        per_answer += [float(part.mean()) for part in np.split(kl, np.cumsum(lengths)[:-1])]
    model.train()
    return float(np.mean(per_answer))


def load_student(student: Path) -> Any:
    """The student's weights if the folder has any, else a fresh init from its config (drawn
    from torch's global RNG: :func:`train` seeds it for the run)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    if any(student.glob("*.safetensors")) or any(student.glob("*.bin")):
        return AutoModelForCausalLM.from_pretrained(str(student), dtype=torch.float32)
    config = AutoConfig.from_pretrained(str(student))
    return AutoModelForCausalLM.from_config(config, dtype=torch.float32)  # type: ignore[no-untyped-call]


# -- checkpoints: weights + optimizer + JSON metadata, written atomically --------------------


def _checkpoints(out: Path) -> list[Path]:
    return sorted((out / "checkpoints").glob("step_*[0-9]"))


def save_checkpoint(
    out: Path, step: int, model: Any, opt: torch.optim.Optimizer, meta: dict[str, Any], keep: int
) -> None:
    final = out / "checkpoints" / f"step_{step:06d}"
    tmp = final.with_name(f".{final.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    torch.save(model.state_dict(), tmp / "model.pt")
    torch.save(opt.state_dict(), tmp / "optim.pt")
    (tmp / "meta.json").write_text(json.dumps({**meta, "step": step}, indent=2) + "\n")
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for old in _checkpoints(out)[: -max(1, keep)]:
        shutil.rmtree(old)


def load_checkpoint(out: Path, model: Any, opt: torch.optim.Optimizer, meta: dict[str, Any]) -> int:
    """Restore the newest checkpoint in ``out``; 0 if none. Refuses one made for other inputs."""
    found = _checkpoints(out)
    if not found:
        return 0
    saved = json.loads((found[-1] / "meta.json").read_text())
    diff = _differences(saved, meta)
    if diff:
        raise TargetsError(
            f"{found[-1]} was made with different settings: {'; '.join(diff)}; "
            "rerun with the saved values, use another --out, or delete its checkpoints"
        )
    model.load_state_dict(torch.load(found[-1] / "model.pt", weights_only=True))
    opt.load_state_dict(torch.load(found[-1] / "optim.pt", weights_only=True))
    return int(saved["step"])


def _differences(saved: dict[str, Any], now: dict[str, Any], prefix: str = "") -> list[str]:
    """``key: saved -> now`` for every leaf that differs (nested dicts named by dotted keys),
    so a refused resume names the flag to fix (``config.lr: 0.003 -> 0.01``)."""
    out: list[str] = []
    for key in sorted(now):
        old, new = saved.get(key), now[key]
        if isinstance(old, dict) and isinstance(new, dict):
            out += _differences(old, new, f"{prefix}{key}.")
        elif old != new:
            out.append(f"{prefix}{key}: {_short(old)} -> {_short(new)}")
    return out


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 60 else text[:57] + "..."


def save_final(
    out: Path, student: Path, model: Any, meta: dict[str, Any], name: str | None = None
) -> str:
    """HF folder (safetensors + config + the student's tokenizer files) and its identity."""
    model.save_pretrained(str(out), safe_serialization=True)
    for weights in out.glob("*.safetensors"):  # transformers writes them 0600: miners serve them
        weights.chmod(0o644)
    for file_name in COPY_FILES:
        if (student / file_name).is_file():
            shutil.copy2(student / file_name, out / file_name)
    payload = identity_for(out, name=name or out.resolve().name).format()
    (out / "identity.txt").write_text(payload + "\n")
    (out / "train_meta.json").write_text(json.dumps({**meta, "identity": payload}, indent=2))
    return payload


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
) -> TrainResult:
    """Distil ``targets_dir`` into the student at ``student``; write the result to ``out``.

    ``name`` goes into the identity payload (default: the folder name). Reruns of an
    interrupted call with the same arguments resume from the newest checkpoint.
    """
    student, out = Path(student), Path(out)
    # Inputs: open and check everything before any compute.
    targets = TargetSet(targets_dir, verify=True)
    k = cfg.k or targets.k
    check_compatible(student, targets, k)
    n_eval = min(cfg.eval_sequences, len(targets) // 10)
    n_train = len(targets) - n_eval
    if n_train < 1:
        raise TargetsError(f"{targets_dir}: too few sequences to train on ({len(targets)})")
    held_out = [targets[i] for i in range(n_train, len(targets))]

    # Compute: bf16 autocast on CUDA, fp32 on CPU; deterministic kernels, seeded init, a fixed
    # thread count, all for this run only (the caller's torch settings are restored after).
    threads = cfg.threads or max(1, len(os.sched_getaffinity(0)))
    with deterministic_torch(cfg.seed, threads):
        device = torch.device(
            cfg.device if cfg.device != "auto" else "cuda" if torch.cuda.is_available() else "cpu"
        )
        autocast = device.type == "cuda"
        model = load_student(student).to(device).train()

        # Optimizer, and resume from the newest checkpoint if there is one.
        opt = torch.optim.AdamW(
            model.parameters(), lr=cfg.lr, betas=(0.9, cfg.beta2), weight_decay=cfg.weight_decay
        )
        meta = {
            "config": asdict(cfg),
            "targets": targets.manifest["request"],
            "student": str(student),
        }
        start = load_checkpoint(out, model, opt, meta)
        if start:
            log(f"resuming from step {start}")

        from rich.progress import Progress, TextColumn

        columns = [
            *Progress.get_default_columns(),
            TextColumn("loss {task.fields[loss]} | {task.fields[rate]} tok/s"),
        ]
        step, tokens, eval_kl = start, 0, float("nan")
        recent: list[float] = []
        t0 = time.monotonic()
        with Progress(*columns, disable=not progress) as bar:
            task = bar.add_task("distill", total=cfg.steps, completed=start, loss="-", rate="-")
            while True:
                last_step = step == cfg.steps
                # Once in a while: held-out divergence, checkpoint.
                if last_step or (cfg.eval_every > 0 and step > 0 and step % cfg.eval_every == 0):
                    eval_kl = evaluate_kl(model, held_out, k, targets.vocab_size, device, autocast)
                    log(f"step {step}: held-out forward KL {eval_kl:.4f}")
                if step > start and (
                    last_step or (cfg.save_every > 0 and step % cfg.save_every == 0)
                ):
                    save_checkpoint(out, step, model, opt, meta, cfg.keep_checkpoints)
                if last_step:
                    break

                # One step: a fixed batch for this step, schedule, clip, update.
                batch = collate(
                    [targets[i] for i in batch_indices(step, n_train, cfg.batch, cfg.seed)],
                    k,
                    device,
                )
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
                opt.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]
                if cfg.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                opt.step()

                # Logging (CPU side).
                step += 1
                tokens += int(batch["mask"].sum())
                recent = [*recent[-max(1, cfg.steps // 10) + 1 :], float(kl)]
                rate = tokens / max(time.monotonic() - t0, 1e-9)
                bar.update(task, advance=1, loss=f"{loss.item():.4f}", rate=f"{rate:,.0f}")

    elapsed = time.monotonic() - t0
    meta["eval_forward_kl"] = eval_kl
    identity = save_final(out, student, model.float().cpu(), meta, name)
    log(f"saved {out} ({identity})")
    return TrainResult(
        out=out,
        steps=cfg.steps,
        train_kl=float(np.mean(recent or [np.nan])),
        eval_kl=eval_kl,
        train_tokens_per_s=tokens / max(elapsed, 1e-9),
        identity=identity,
    )
