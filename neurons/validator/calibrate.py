"""Calibrate the spot-check tolerance from honest runs, for a target false-positive rate.

An honest miner's claims come from generation on each miner engine (miners may serve with vLLM
while the validator recomputes with hf, or the other way round), with the prompt batched among
others as a busy miner batches concurrent requests; the validator recomputes them by teacher
forcing, on each engine, batched again. Batch sizes on both sides vary the kernels' reduction
order, and in 16-bit precision that rounding is the whole honest error: on the tiny student in
bfloat16, claims generated in batches and recomputed in others are off by up to ~10x more than
claims generated and recomputed alone, so a calibration that only generates alone sets a
tolerance that honest miners fail. The claimed-vs-recomputed error of honest
answers is the null distribution: the tolerance is its ``1 - fpr`` quantile times a safety
margin (the agreement threshold its ``fpr`` quantile divided by it), so an honest miner fails a
check with probability about ``fpr`` on the hardware measured. With fewer than ``1 / fpr``
samples the quantile is the sample maximum; the report says so. A second model (``against``)
shows the other side: how far a different model's claims land from the committed one's.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from distill.tasks import generate_tasks
from scoring import verify
from scoring.config import VerifyConfig, is_full_precision
from subnet.engine import Completion, Engine, SamplingParams, Scored
from subnet.tokenizer import ModelTokenizer

_LOOSE = VerifyConfig(max_mean_abs_dp=1.0, min_topk_agreement=0.0, min_sampled_logprob=-1e9)


@dataclass(frozen=True)
class Sample:
    miner: str  # the engine that generated the claims
    engine: str  # the engine that recomputed them
    miner_batch: int  # prompts generated together with this one
    batch: int  # answers recomputed together with this one
    seed: int
    mean_abs_dp: float
    agreement: float


@dataclass
class Calibration:
    fpr: float
    margin: float
    samples: list[Sample] = field(default_factory=list)
    against: list[Sample] = field(default_factory=list)
    dtype: str = "float32"  # the recompute engines' precision: which config keys it sets

    def config_values(self) -> dict[str, str]:
        """The ``[verify]`` keys this calibration sets: the float32 or the 16-bit pair."""
        suffix = "" if is_full_precision(self.dtype) else "_half"
        return {
            f"max_mean_abs_dp{suffix}": f"{self.max_mean_abs_dp:.6g}",
            f"min_topk_agreement{suffix}": f"{self.min_topk_agreement:.6g}",
        }

    def dps(self) -> np.ndarray:
        return np.array([s.mean_abs_dp for s in self.samples])

    def agreements(self) -> np.ndarray:
        return np.array([s.agreement for s in self.samples])

    @property
    def max_mean_abs_dp(self) -> float:
        q = float(np.quantile(self.dps(), 1.0 - self.fpr)) if self.samples else 0.0
        return float(min(1.0, max(q * self.margin, 1e-4)))

    @property
    def min_topk_agreement(self) -> float:
        q = float(np.quantile(self.agreements(), self.fpr)) if self.samples else 1.0
        return float(max(0.0, q / self.margin))


def _claims(c: Completion, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (
        c.sampled_logprobs.astype(np.float64),
        c.top_ids[:, :k],
        c.top_logprobs[:, :k].astype(np.float64),
    )


async def measure(
    miner: Engine,
    recompute: Mapping[str, Engine],
    prompts: Sequence[Sequence[int]],
    *,
    batch_sizes: Sequence[int],
    seed: int,
    k: int,
    max_tokens: int,
    temperature: float,
    miner_name: str = "",
) -> list[Sample]:
    """Honest generations at each batch size, each recomputed on each engine at each size."""
    out: list[Sample] = []
    for gen_batch in batch_sizes:
        claims = await _generate(
            miner,
            prompts,
            gen_batch,
            SamplingParams(
                max_tokens=max_tokens, temperature=temperature, seed=seed, top_logprobs=k
            ),
        )
        for name, engine in recompute.items():
            for b in batch_sizes:
                for start in range(0, len(prompts), b):
                    idx = range(start, min(start + b, len(prompts)))
                    scored = await engine.score(
                        [prompts[i] for i in idx], [claims[i].token_ids.tolist() for i in idx], k
                    )
                    for i, r in zip(idx, scored, strict=True):
                        dp, agreement = _error(claims[i], r, k, miner.info.vocab_size)
                        out.append(Sample(miner_name, name, gen_batch, b, seed, dp, agreement))
    return out


async def _generate(
    miner: Engine, prompts: Sequence[Sequence[int]], batch: int, params: SamplingParams
) -> list[Completion]:
    """One completion per prompt, generated ``batch`` prompts at a time."""
    claims: list[Completion] = []
    for start in range(0, len(prompts), batch):
        claims += await miner.generate(prompts[start : start + batch], params)
    return claims


def _error(claim: Completion, recomputed: Scored, k: int, vocab: int) -> tuple[float, float]:
    """(mean |dp|, top-k agreement) of one claim against its recomputation."""
    s_lp, t_ids, t_lp = _claims(claim, k)
    v = verify.verify_distributions(
        s_lp,
        t_ids,
        t_lp,
        recomputed.target_logprobs,
        recomputed.target_ranks,
        recomputed.top_ids,
        recomputed.top_logprobs,
        vocab_size=vocab,
        cfg=_LOOSE,
    )
    return v.mean_abs_dp, v.topk_agreement


async def calibrate(
    miners: Mapping[str, Engine],
    recompute: Mapping[str, Engine],
    tokenizer: ModelTokenizer,
    *,
    seeds: Sequence[int],
    batch_sizes: Sequence[int],
    tasks: int,
    k: int,
    max_tokens: int,
    temperature: float,
    fpr: float,
    margin: float,
    against: Engine | None = None,
) -> Calibration:
    dtypes = sorted({e.info.provenance.dtype for e in recompute.values()})
    if len({is_full_precision(d) for d in dtypes}) != 1:
        raise ValueError(f"recompute engines mix precisions {dtypes}: calibrate one at a time")
    cal = Calibration(fpr, margin, dtype=dtypes[0])
    for seed in seeds:
        # As the validator sends them: the teacher's BOS rule and chat template.
        prompts = [
            tokenizer.encode_prompt(t.prompt) for t in generate_tasks(f"calib-{seed}", tasks)
        ]
        for miner_name, miner in miners.items():
            cal.samples += await measure(
                miner,
                recompute,
                prompts,
                batch_sizes=batch_sizes,
                seed=seed,
                k=k,
                max_tokens=max_tokens,
                temperature=temperature,
                miner_name=miner_name,
            )
        if against is not None:
            cal.against += await measure(
                against,
                recompute,
                prompts,
                batch_sizes=[max(batch_sizes)],
                seed=seed,
                k=k,
                max_tokens=max_tokens,
                temperature=temperature,
                miner_name="against",
            )
    return cal


def _q(x: np.ndarray, q: float) -> str:
    return f"{float(np.quantile(x, q)):.3g}" if x.size else "-"


def report(
    cal: Calibration,
    *,
    model: str,
    against: str | None,
    provenance: str,
    config_path: str | None = None,
) -> str:
    """The calibration as Markdown; ``config_path`` is where the tolerance was written (None:
    nowhere, and the report says how to write it)."""
    dps, agr = cal.dps(), cal.agreements()
    enough = len(cal.samples) >= math.ceil(1 / cal.fpr)
    lines = [
        "# Spot-check calibration",
        "",
        "Generated by `subnet validator calibrate`; the tolerance below is chosen from these",
        "measurements, not by hand.",
        "",
        f"- honest model: `{model}`",
        f"- engines and hardware: {provenance}",
        f"- honest answers checked: {len(cal.samples)}; target false-positive rate "
        f"{cal.fpr:g}; safety margin x{cal.margin:g}",
        "- "
        + (
            "the quantile is empirical"
            if enough
            else f"fewer than 1/fpr = {math.ceil(1 / cal.fpr)} samples: the quantile is the "
            "sample maximum, so the margin carries the extrapolation"
        ),
        "",
        "| miner -> recompute | batch (generated, recomputed) | n | mean abs dp p50 | p99 | max "
        "| top-k agreement min |",
        "|---|---|---|---|---|---|---|",
    ]
    groups = sorted({(s.miner, s.engine, s.miner_batch, s.batch) for s in cal.samples})
    for m, eng, gb, b in groups:
        sel = [
            s for s in cal.samples if (s.miner, s.engine, s.miner_batch, s.batch) == (m, eng, gb, b)
        ]
        d = np.array([s.mean_abs_dp for s in sel])
        a = np.array([s.agreement for s in sel])
        lines.append(
            f"| {m} -> {eng} | {gb}, {b} | {len(sel)} | {_q(d, 0.5)} | {_q(d, 0.99)} | "
            f"{d.max():.3g} | {a.min():.3g} |"
        )
    lines += [
        "",
        f"Honest overall: mean abs dp max {dps.max():.3g}, top-k agreement min {agr.min():.3g}.",
        "",
    ]
    if cal.against:
        d = np.array([s.mean_abs_dp for s in cal.against])
        a = np.array([s.agreement for s in cal.against])
        caught = float(np.mean((d > cal.max_mean_abs_dp) | (a < cal.min_topk_agreement)))
        lines += [
            f"A different model (`{against}`) claiming to be the honest one: mean abs dp "
            f"p1 {_q(d, 0.01)}, median {_q(d, 0.5)}; top-k agreement median {_q(a, 0.5)}; "
            f"caught by the chosen tolerance in {caught:.1%} of {d.size} answers.",
            "",
        ]
    lines += [
        "## Chosen tolerance "
        + (
            f"(written to `{config_path}`)"
            if config_path
            else "(not written to any config: pass `--write-config subnet.toml`)"
        ),
        "",
        "```toml",
        "[verify]",
        *(f"{k} = {v}" for k, v in cal.config_values().items()),
        "```",
        "",
    ]
    return "\n".join(lines)


def write_config(path: Path, cal: Calibration) -> None:
    """Set the calibrated ``[verify]`` keys in a TOML file, keeping every other line as it was."""
    values = cal.config_values()
    text = path.read_text() if path.exists() else ""
    if "[verify]" not in text:
        text += "\n[verify]\n"
    head, _, rest = text.partition("[verify]")
    section, nl, tail = rest.partition("\n[")
    for key, value in values.items():
        pattern = re.compile(rf"^{key}\s*=.*$", re.M)
        if pattern.search(section):
            section = pattern.sub(f"{key} = {value}", section)
        else:
            section = section.rstrip("\n") + f"\n{key} = {value}\n"
    path.write_text(head + "[verify]" + section + nl + tail)
