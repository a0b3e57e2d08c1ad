"""The trainer's checkpoints and its final model folder, written once by rank 0.

A checkpoint is ``out/checkpoints/step_NNNNNN/`` with the model's and the optimizer's full
(unsharded, CPU) state dicts keyed by parameter name, the run's metadata and, for on-policy
runs, the current pool of student samples with their teacher targets. It is written into a
temporary folder and renamed, so a kill at any moment leaves either the previous checkpoint or
the new one. The state dicts come from ``torch.distributed.checkpoint.state_dict``, which
gives the same full dicts for a plain module, DDP and FSDP: a checkpoint made by N processes
resumes on any number of processes at the same global batch.

On resume rank 0 reads the newest checkpoint, checks that it was made for the same inputs and
settings, and the weights, optimizer moments and pool reach the other ranks from it (a
broadcast, so the other ranks need not see the same disk).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from distill.distributed import Dist
from distill.identity import identity_for
from distill.shards import TargetsError

#: Bumped when the checkpoint layout changes; a checkpoint of another format is refused.
CHECKPOINT_FORMAT = 2  # 2: state dicts keyed by parameter name (DDP/FSDP), optional pool

COPY_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "generation_config.json",
    "chat_template.jinja",
)


def _options(**kw: Any) -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, **kw)


def full_state(model: Any, opt: torch.optim.Optimizer | None = None) -> tuple[dict[str, Any], ...]:
    """Full CPU state dicts (model, and optimizer if given); a collective under FSDP, so every
    rank calls it; only rank 0's copy is complete."""
    from torch.distributed.checkpoint.state_dict import (
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    opts = _options(cpu_offload=True)
    model_sd = get_model_state_dict(model, options=opts)
    if opt is None:
        return (model_sd,)
    return model_sd, get_optimizer_state_dict(model, opt, options=opts)


def checkpoints(out: Path) -> list[Path]:
    return sorted((out / "checkpoints").glob("step_*[0-9]"))


def save_checkpoint(
    out: Path,
    step: int,
    model: Any,
    opt: torch.optim.Optimizer,
    meta: dict[str, Any],
    keep: int,
    dist: Dist,
    pool: Any = None,
) -> None:
    """Every rank calls it (gathering is collective); rank 0 writes. ``pool``: any picklable
    object the run needs to resume mid-way (the on-policy samples)."""
    model_sd, opt_sd = full_state(model, opt)
    if dist.main:
        final = out / "checkpoints" / f"step_{step:06d}"
        tmp = final.with_name(f".{final.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        torch.save(model_sd, tmp / "model.pt")
        torch.save(opt_sd, tmp / "optim.pt")
        if pool is not None:
            torch.save(pool, tmp / "pool.pt")
        (tmp / "meta.json").write_text(json.dumps({**meta, "step": step}, indent=2) + "\n")
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        for old in checkpoints(out)[: -max(1, keep)]:
            shutil.rmtree(old)
    dist.barrier()


def _read_newest(out: Path, meta: dict[str, Any]) -> tuple[int, Path | None, str]:
    found = checkpoints(out)
    if not found:
        return 0, None, ""
    try:
        saved = json.loads((found[-1] / "meta.json").read_text())
    except (OSError, ValueError) as e:
        return 0, None, f"{found[-1]}: unreadable meta.json ({e}); delete that checkpoint"
    diff = _differences(saved, meta)
    if diff:
        return (
            0,
            None,
            f"{found[-1]} was made with different settings: {'; '.join(diff)}; "
            "rerun with the saved values, use another --out, or delete its checkpoints",
        )
    return int(saved["step"]), found[-1], ""


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


def load_checkpoint(
    out: Path, model: Any, opt: torch.optim.Optimizer, meta: dict[str, Any], dist: Dist
) -> tuple[int, Any]:
    """Restore the newest checkpoint in ``out`` on every rank: ``(step, pool)``; ``(0, None)``
    if there is none. Refuses (on every rank) one made for other inputs or settings."""
    from torch.distributed.checkpoint.state_dict import (
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    step, path, error = _read_newest(out, meta) if dist.main else (0, None, "")
    step, error = dist.broadcast((step, error))
    if error:
        raise TargetsError(error)
    if not step:
        return 0, None
    model_sd: dict[str, Any] = {}
    opt_sd: dict[str, Any] = {}
    pool = None
    if dist.main and path is not None:
        model_sd = torch.load(path / "model.pt", weights_only=True)
        opt_sd = torch.load(path / "optim.pt", weights_only=True)
        if (path / "pool.pt").is_file():
            pool = torch.load(path / "pool.pt", weights_only=False)
    opts = _options(broadcast_from_rank0=dist.world > 1)
    set_model_state_dict(model, model_sd, options=opts)
    set_optimizer_state_dict(model, opt, opt_sd, options=opts)
    return step, dist.broadcast(pool)


def save_final(
    out: Path,
    student: Path,
    model: Any,
    meta: dict[str, Any],
    dist: Dist,
    name: str | None = None,
) -> str:
    """HF folder (safetensors + config + the student's tokenizer files) and its identity,
    written by rank 0; every rank gets the identity payload."""
    (model_sd,) = full_state(model)
    payload = ""
    if dist.main:
        from transformers import AutoModelForCausalLM

        config = getattr(model, "module", model).config
        with torch.device("meta"):
            fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)  # type: ignore[no-untyped-call]
        fresh.load_state_dict({k: v.float() for k, v in model_sd.items()}, assign=True)
        fresh.save_pretrained(str(out), safe_serialization=True)
        for weights in out.glob("*.safetensors"):  # transformers writes 0600: miners serve them
            weights.chmod(0o644)
        for file_name in COPY_FILES:
            if (student / file_name).is_file():
                shutil.copy2(student / file_name, out / file_name)
        payload = identity_for(out, name=name or out.resolve().name).format()
        (out / "identity.txt").write_text(payload + "\n")
        (out / "train_meta.json").write_text(json.dumps({**meta, "identity": payload}, indent=2))
    return str(dist.broadcast(payload))
