"""Teacher targets: completions and their raw top-K distributions, written as shards.

The teacher answers every prompt through the engine seam (vLLM by default, the transformers
engine for small CPU jobs); every generated position's raw top-K (the distribution the validator
will compare miners against) is kept with the tokens. Shards of ``shard_size`` prompts are
written one by one (``distill.shards``), so an interrupted run resumes at the first missing
shard and, because shard i's sampling seed depends only on its prompts' global indices, ends
with the same bytes an uninterrupted run writes.

A resumed run must ask for the same thing: teacher digest, K, tokenizer, prompts, sampling and
shard size are compared with the manifest, and a difference is an error that names the field.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from distill.identity import identity_for
from distill.prompts import load_prompt_file
from distill.shards import (
    FORMAT,
    MANIFEST,
    Example,
    TargetsError,
    read_manifest,
    shard_intact,
    tokenizer_hash,
    write_json_atomic,
    write_shard,
)
from distill.tasks import Task, generate_tasks

if TYPE_CHECKING:
    from subnet.engine import Engine


@dataclass(frozen=True)
class TargetsConfig:
    k: int = 16  # top-K kept per position (the validator asks for <= this)
    max_tokens: int = 32  # completion length limit
    temperature: float = 0.0  # 0 = the teacher's greedy answers
    seed: int = 0  # sampling seed of prompt i is seed + i (ignored when greedy)
    shard_size: int = 1024  # prompts per shard (the resume granularity)
    batch: int = 128  # prompts per engine call

    def __post_init__(self) -> None:
        for name in ("k", "max_tokens", "shard_size", "batch"):
            if getattr(self, name) < 1:
                raise TargetsError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.temperature < 0:
            raise TargetsError(f"temperature must be >= 0, got {self.temperature}")


def load_prompts(spec: str) -> list[Task]:
    """Tasks from ``spec``: a prompt file (JSONL, Parquet, a datasets ``save_to_disk``
    folder: :mod:`distill.prompts`), or ``tasks:N[:SEED[:fam1,fam2]]`` (seeded).

    Raises TargetsError (an empty or malformed file, a bad spec), naming the problem.
    """
    if spec.startswith("tasks:"):
        parts = spec.split(":")[1:]
        try:
            n = int(parts[0])
            seed = int(parts[1]) if len(parts) > 1 and parts[1] else 0
        except (ValueError, IndexError) as e:
            raise TargetsError(f"bad task spec {spec!r}: expected tasks:N[:SEED[:families]]") from e
        families = parts[2].split(",") if len(parts) > 2 and parts[2] else None
        if n < 1:
            raise TargetsError(f"bad task spec {spec!r}: N must be >= 1")
        try:
            return generate_tasks(seed, n, families)
        except ValueError as e:
            raise TargetsError(f"bad task spec {spec!r}: {e}") from e
    if not Path(spec).exists():
        raise TargetsError(f"prompts {spec!r}: no such file (or use tasks:N[:SEED])")
    try:
        return list(load_prompt_file(spec).tasks)
    except ValueError as e:
        raise TargetsError(str(e)) from e


def encode_prompts(teacher: Path, tasks: Sequence[Task]) -> list[list[int]]:
    """Prompt ids exactly as the validator sends them (the teacher's tokenizer rules: BOS,
    chat template, no special-token text; :class:`subnet.tokenizer.ModelTokenizer`)."""
    from subnet.errors import EngineError
    from subnet.tokenizer import ModelTokenizer

    try:
        tok = ModelTokenizer(teacher)
    except EngineError as e:
        raise TargetsError(f"{teacher}: {e} (the targets need the teacher's tokenizer)") from e
    out = []
    for i, t in enumerate(tasks):
        try:
            out.append(tok.encode_prompt(t.content))
        except ValueError as e:
            raise TargetsError(f"prompt {i} ({t.task_id}): {e}") from e
    return out


def _request(
    teacher: Path, prompts: Sequence[Sequence[int]], cfg: TargetsConfig, source: str
) -> dict[str, Any]:
    """The fields that decide the targets' bytes; a resumed run must match them exactly."""
    h = hashlib.sha256()
    for p in prompts:
        h.update(np.asarray(p, dtype=np.int64).tobytes() + b"|")
    return {
        "teacher_digest": identity_for(teacher).digest,
        "tokenizer_hash": tokenizer_hash(teacher),
        "prompts_sha256": h.hexdigest(),
        "prompts_count": len(prompts),
        "prompts_source": source,
        **asdict(cfg),
    }


def _start_manifest(
    out: Path, teacher: Path, request: dict[str, Any], info: dict[str, Any]
) -> dict[str, Any]:
    """The manifest to continue: the existing one if it asks the same, else a fresh one."""
    if (out / MANIFEST).is_file():
        manifest = read_manifest(out)
        old = manifest["request"]
        diff = sorted(k for k in request if k != "prompts_source" and old.get(k) != request[k])
        if diff:
            raise TargetsError(
                f"{out} holds targets for a different request (differs in {', '.join(diff)}); "
                "choose another --out or delete it"
            )
        # Shards damaged since (truncated, deleted) are rebuilt rather than trusted.
        manifest["shards"] = [s for s in manifest["shards"] if shard_intact(out, s)]
        manifest["complete"] = False
        return manifest
    num_shards = -(-request["prompts_count"] // request["shard_size"])
    return {
        "format": FORMAT,
        "complete": False,
        "request": request,
        "teacher": {"path": str(teacher), "digest": request["teacher_digest"]},
        "k": request["k"],
        "tokenizer_hash": request["tokenizer_hash"],
        "num_shards": num_shards,
        "shards": [],
        **info,
    }


async def _run_shard(
    engine: Engine,
    prompts: Sequence[Sequence[int]],
    first: int,
    cfg: TargetsConfig,
    on_batch: Callable[[int, int], None],
) -> list[Example]:
    from subnet.engine import SamplingParams

    out: list[Example] = []
    for start in range(0, len(prompts), cfg.batch):
        chunk = prompts[start : start + cfg.batch]
        params = SamplingParams(
            max_tokens=cfg.max_tokens,
            temperature=cfg.temperature,
            seed=cfg.seed + first + start,
            top_logprobs=cfg.k,
        )
        for prompt, c in zip(chunk, await engine.generate(chunk, params), strict=True):
            out.append(
                Example(
                    tokens=np.asarray([*prompt, *c.token_ids.tolist()], dtype=np.int32),
                    prompt_len=len(prompt),
                    top_ids=c.top_ids.astype(np.int32),
                    top_logprobs=np.minimum(c.top_logprobs, 0.0).astype(np.float32),
                )
            )
        on_batch(len(chunk), sum(len(e.tokens) - e.prompt_len for e in out[-len(chunk) :]))
    return out


async def _write_targets(
    teacher: str | Path,
    tasks: Sequence[Task],
    out: str | Path,
    cfg: TargetsConfig,
    *,
    engine: Engine,
    source: str = "",
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Write (or finish) targets for ``tasks`` into ``out`` with ``engine``.

    ``log`` (when given) gets one line at the start and one per shard written: where there is
    no terminal for the progress bar (a log file, a pipe) the run still shows progress."""
    teacher, out = Path(teacher), Path(out)
    if not tasks:
        raise TargetsError("no prompts")
    if cfg.k > engine.info.max_top_logprobs:
        raise TargetsError(f"k={cfg.k} exceeds the engine's limit {engine.info.max_top_logprobs}")
    prompts = encode_prompts(teacher, tasks)
    for i, p in enumerate(prompts):
        if len(p) + cfg.max_tokens > engine.info.max_model_len:
            raise TargetsError(
                f"prompt {i}: {len(p)} tokens + max_tokens {cfg.max_tokens} "
                f"exceeds the teacher's context {engine.info.max_model_len}"
            )
    out.mkdir(parents=True, exist_ok=True)
    info = {
        "vocab_size": engine.info.vocab_size,
        "eos_token_ids": list(engine.info.eos_token_ids),
        "engine": engine.info.provenance.to_dict(),
    }
    manifest = _start_manifest(out, teacher, _request(teacher, prompts, cfg, source), info)
    done = {int(s["index"]) for s in manifest["shards"]}
    todo = [i for i in range(manifest["num_shards"]) if i not in done]
    if log is not None:
        log(
            f"targets: {len(prompts)} prompts in {manifest['num_shards']} shards "
            f"({len(done)} already written), k={cfg.k}, max_tokens={cfg.max_tokens}, "
            f"{engine.info.provenance.engine} engine"
        )

    from rich.progress import Progress, TextColumn

    columns = [*Progress.get_default_columns(), TextColumn("{task.fields[rate]} tok/s")]
    with Progress(*columns, disable=not progress) as bar:
        task = bar.add_task(
            "teacher targets",
            total=len(prompts),
            rate="-",
            completed=sum(s["sequences"] for s in manifest["shards"]),
        )
        started, tokens = time.monotonic(), 0

        def on_batch(n_seq: int, n_tokens: int) -> None:
            nonlocal tokens
            tokens += n_tokens
            rate = tokens / max(time.monotonic() - started, 1e-9)
            bar.update(task, advance=n_seq, rate=f"{rate:,.0f}")

        for index in todo:
            first = index * cfg.shard_size
            examples = await _run_shard(
                engine, prompts[first : first + cfg.shard_size], first, cfg, on_batch
            )
            manifest["shards"] = sorted(
                [*manifest["shards"], write_shard(out, index, examples)], key=lambda s: s["index"]
            )
            write_json_atomic(out / MANIFEST, manifest)
            if log is not None:
                written = sum(s["sequences"] for s in manifest["shards"])
                elapsed = time.monotonic() - started
                log(
                    f"targets: shard {index + 1}/{manifest['num_shards']} written, "
                    f"{written}/{len(prompts)} sequences, "
                    f"{tokens / max(elapsed, 1e-9):,.0f} tok/s, {elapsed:.0f} s"
                )
    manifest["complete"] = True
    manifest["sequences"] = sum(s["sequences"] for s in manifest["shards"])
    manifest["positions"] = sum(s["positions"] for s in manifest["shards"])
    write_json_atomic(out / MANIFEST, manifest)
    return manifest


async def build_targets(
    teacher: str | Path,
    tasks: Sequence[Task],
    out: str | Path,
    cfg: TargetsConfig,
    *,
    engine_kind: str = "vllm",
    engine: Engine | None = None,
    source: str = "",
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Write (or finish) targets for ``tasks`` into ``out``; return the final manifest.

    Loads ``engine_kind`` on ``teacher`` (and closes it) unless given an open ``engine``.
    """
    if engine is not None:
        return await _write_targets(
            teacher, tasks, out, cfg, engine=engine, source=source, progress=progress, log=log
        )
    from subnet.engine import load_engine

    owned = load_engine(
        engine_kind,  # type: ignore[arg-type]
        teacher,
        max_top_logprobs=max(cfg.k, 20),
    )
    try:
        return await _write_targets(
            teacher, tasks, out, cfg, engine=owned, source=source, progress=progress, log=log
        )
    finally:
        await owned.close()
