"""Training with a teacher engine at hand: on-policy targets from inside the trainer.

The trainer (:func:`distill.train.train`) is synchronous CPU/GPU work; the engines are async.
:func:`train_with_teacher` loads the teacher (or takes an open engine), runs the trainer in a
worker thread and gives it a blocking ``score`` that hands each request to this event loop,
where the engine lives. No event loop is started here: the CLI owns ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from distill.distributed import local_rank_from_env, pick_device, world_size_from_env
from distill.onpolicy import TeacherScore
from distill.shards import TargetsError, TargetSet, tokenizer_hash
from distill.train import train
from distill.train_config import TrainConfig, TrainResult

if TYPE_CHECKING:
    from subnet.engine import Engine, Scored


async def train_with_teacher(
    student: str | Path,
    targets_dir: str | Path,
    out: str | Path,
    cfg: TrainConfig,
    *,
    teacher: str | Path | None = None,
    engine_kind: str = "vllm",
    engine: Engine | None = None,
    log: Callable[[str], None] = print,
    progress: bool = True,
    name: str | None = None,
) -> TrainResult:
    """:func:`distill.train.train`, with the teacher scoring the student's samples.

    Loads ``engine_kind`` on ``teacher`` (the hf engine on this rank's device; closed
    afterwards) unless given an open ``engine``. With ``cfg.onpolicy_ratio == 0`` no teacher
    is loaded: offline training only.
    """
    loop = asyncio.get_running_loop()
    owned = None
    if engine is None and cfg.onpolicy_ratio > 0:
        if teacher is None:
            raise TargetsError("on-policy training needs --teacher (the model that scores)")
        targets = TargetSet(targets_dir)
        if tokenizer_hash(teacher) != targets.tokenizer_hash:
            raise TargetsError(
                f"tokenizer mismatch: the teacher {teacher} does not share the tokenizer "
                f"of the targets in {targets_dir}"
            )
        from subnet.engine import load_engine

        kw: dict[str, Any] = {}
        device = pick_device(cfg.device, local_rank_from_env())
        if engine_kind == "hf":
            kw["device"] = str(device)
        elif device.type == "cuda" and world_size_from_env() > 1:
            raise TargetsError(
                "on-policy training with several GPU processes needs --engine hf (each rank "
                "puts its teacher on its own GPU; a vLLM engine per rank would share the first)"
            )
        owned = engine = load_engine(
            engine_kind,  # type: ignore[arg-type]
            teacher,
            max_top_logprobs=max(cfg.k or targets.k, 20),
            **kw,
        )
    score: TeacherScore | None = None
    if engine is not None:
        scorer = engine

        def score(prompts: list[list[int]], completions: list[list[int]], k: int) -> list[Scored]:
            request = scorer.score(prompts, completions, k)
            return asyncio.run_coroutine_threadsafe(request, loop).result()

    stop = threading.Event()
    run = functools.partial(
        train,
        student,
        targets_dir,
        out,
        cfg,
        log=log,
        progress=progress,
        name=name,
        teacher_score=score,
        stop=stop,
    )
    job = loop.run_in_executor(None, run)
    try:
        return await asyncio.shield(job)
    except asyncio.CancelledError:
        # Cancelled (Ctrl-C): the worker thread stops before its next step; wait for it, so
        # nothing keeps training (or writing to ``out``) after this returns.
        stop.set()
        with contextlib.suppress(BaseException):
            await job
        raise
    finally:
        if owned is not None:
            await owned.close()
