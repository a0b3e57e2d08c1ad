"""The distillation trainer: exact resume after a kill, bad inputs refused before training,
and (slow) the tiny world's distilled student against the cross-entropy one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from distill.shards import TargetsError
from distill.tiny import TinyWorld
from distill.train import TrainConfig, train
from tests.integration._distill_kit import make_model, make_targets


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("distill")
    teacher = make_model(root / "teacher", seed=0)
    return {
        "teacher": teacher,
        "student": make_model(root / "student", seed=1, weights=False),
        "targets": make_targets(teacher, root / "targets"),
    }


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / "model.safetensors"))


RUN = """
import sys
from pathlib import Path
from distill.train import TrainConfig, train
cfg = TrainConfig(steps=int(sys.argv[4]), batch=4, lr=1e-2, warmup=3, eval_sequences=4,
                  eval_every=-1, save_every=2, seed=5)
train(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), cfg, progress=False,
      log=lambda m: print(m, flush=True))
"""


def _run(args: list[str]) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    return subprocess.Popen(
        [sys.executable, "-c", RUN, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_killed_run_resumes_to_the_same_weights(world: dict[str, Path], tmp_path: Path) -> None:
    steps = "400"
    base = [str(world["student"]), str(world["targets"])]
    whole = _run([*base, str(tmp_path / "whole"), steps])

    killed_out = tmp_path / "killed"
    proc = _run([*base, str(killed_out), steps])
    deadline = time.monotonic() + 300
    while not (killed_out / "checkpoints" / "step_000006").exists():
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        assert time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed_out / "model.safetensors").exists()  # it really died mid-run

    resumed = _run([*base, str(killed_out), steps])
    out, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, out
    assert "resuming from step" in out
    assert whole.wait(timeout=600) == 0
    a, b = _weights(tmp_path / "whole"), _weights(killed_out)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_trained_folder_is_a_committable_model(world: dict[str, Path], tmp_path: Path) -> None:
    from distill.identity import identity_for, parse_identity

    cfg = TrainConfig(steps=6, batch=4, warmup=2, eval_sequences=4, save_every=-1)
    result = train(
        world["student"], world["targets"], tmp_path / "s", cfg, progress=False, log=lambda _: None
    )
    assert parse_identity(result.identity).digest == identity_for(tmp_path / "s").digest
    # Exactly what `subnet miner --model s/` commits by default (the folder's name), and what
    # the folder says it is: the name is the model's, not the last file the trainer copied.
    assert result.identity == identity_for(tmp_path / "s").format()
    assert (tmp_path / "s" / "identity.txt").read_text().strip() == result.identity
    assert parse_identity(result.identity).name == "s"
    named = train(
        world["student"],
        world["targets"],
        tmp_path / "n",
        cfg,
        progress=False,
        log=lambda _: None,
        name="my-student",
    )
    assert parse_identity(named.identity).name == "my-student"
    assert named.identity == identity_for(tmp_path / "n", name="my-student").format()
    assert (tmp_path / "s" / "tokenizer.json").read_bytes() == (
        world["teacher"] / "tokenizer.json"
    ).read_bytes()
    assert result.eval_kl >= 0


def test_training_leaves_the_process_torch_settings_as_it_found_them(
    world: dict[str, Path], tmp_path: Path
) -> None:
    """Seeds, deterministic kernels and the thread count are the run's, not the process's."""
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    rng = torch.random.get_rng_state()
    cfg = TrainConfig(steps=2, batch=4, warmup=1, eval_sequences=4, save_every=-1, threads=1)
    train(world["student"], world["targets"], tmp_path / "s", cfg, progress=False, log=print)
    assert torch.get_num_threads() == threads
    assert torch.are_deterministic_algorithms_enabled() == deterministic
    assert torch.equal(torch.random.get_rng_state(), rng)


def test_other_tokenizer_is_refused(world: dict[str, Path], tmp_path: Path) -> None:
    other = make_model(tmp_path / "other", seed=1, tokenizer_seed=7, weights=False)
    with pytest.raises(TargetsError, match="tokenizer mismatch"):
        train(other, world["targets"], tmp_path / "o", TrainConfig(steps=2), progress=False)
    assert not (tmp_path / "o").exists()


def test_k_larger_than_stored_is_refused(world: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(TargetsError, match="k=9 is larger than the 8 stored"):
        train(
            world["student"],
            world["targets"],
            tmp_path / "o",
            TrainConfig(steps=2, k=9),
            progress=False,
        )


def test_truncated_shard_is_refused(world: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    bad = tmp_path / "targets"
    shutil.copytree(world["targets"], bad)
    path = bad / "shard-00001" / "top_ids.npy"
    path.write_bytes(path.read_bytes()[:-8])
    with pytest.raises(TargetsError, match="truncated"):
        train(world["student"], bad, tmp_path / "o", TrainConfig(steps=2), progress=False)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--nproc", "0"], "--nproc must be >= 1"),
        (["--nproc", "2", "--batch", "1"], "--batch 1 is smaller than --nproc 2"),
        (["--nproc", "2", "--onpolicy-ratio", "0.5"], "needs --teacher"),
        (["--onpolicy-ratio", "0.5"], "needs --teacher"),
        (["--onpolicy-ratio", "1.5"], "onpolicy_ratio must be in [0, 1]"),
        (["--parallel", "zero"], "parallel must be 'ddp' or 'fsdp'"),
        (["--nproc", "2", "--k", "99"], "k=99 is larger than the 8 stored"),
    ],
)
def test_train_cli_refuses_bad_runs_before_starting_anything(
    world: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    flags: list[str],
    message: str,
) -> None:
    from subnet.cli import main

    base = ["distill", "train", "--student", str(world["student"]), "--targets"]
    code = main([*base, str(world["targets"]), "--out", str(tmp_path / "o"), *flags])
    err = capsys.readouterr().err
    assert code == 2 and message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "o").exists()


CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<assistant>{% endif %}"
)


def test_chat_prompts_are_rendered_with_the_teachers_template(
    world: dict[str, Path], tmp_path: Path
) -> None:
    """Targets from a ``messages`` file: the prompt ids are exactly what the teacher's template
    renders (one BOS, from the template), and a student trains on them."""
    import asyncio
    import json
    import shutil

    from transformers import AutoTokenizer

    from distill.targets import TargetsConfig, build_targets, load_prompts

    teacher = tmp_path / "teacher"
    shutil.copytree(world["teacher"], teacher)
    config = json.loads((teacher / "tokenizer_config.json").read_text())
    (teacher / "tokenizer_config.json").write_text(
        json.dumps({**config, "chat_template": CHAT_TEMPLATE})
    )
    turns = [[{"role": "user", "content": f"add {i} {i + 1} ="}] for i in range(12)] + [
        [{"role": "system", "content": "sort"}, {"role": "user", "content": "sort 3 1 ="}]
    ]
    prompts = tmp_path / "chat.jsonl"
    prompts.write_text("".join(json.dumps({"messages": m}) + "\n" for m in turns))
    out = tmp_path / "targets"
    cfg = TargetsConfig(k=8, max_tokens=4, shard_size=8, batch=8)
    tasks = load_prompts(str(prompts))
    asyncio.run(build_targets(teacher, tasks, out, cfg, engine_kind="hf", progress=False))

    from distill.shards import TargetSet

    tok = AutoTokenizer.from_pretrained(str(teacher))
    made = TargetSet(out)
    for i, m in enumerate(turns):
        text = str(tok.apply_chat_template(m, add_generation_prompt=True, tokenize=False))
        want = tok(text, add_special_tokens=False)["input_ids"]
        got = made[i].tokens[: made[i].prompt_len].tolist()
        assert got == want and got.count(tok.bos_token_id) == 1, (got, want)
    assert text.startswith("<bos><system>sort\n<user>sort 3 1 =\n<assistant>")
    result = train(
        world["student"],
        out,
        tmp_path / "s",
        TrainConfig(steps=2, batch=4, warmup=1, eval_sequences=2, save_every=-1),
        progress=False,
        log=lambda _: None,
    )
    assert result.eval_kl >= 0

    # A teacher without a template cannot render chat prompts: one clear error, no targets.
    with pytest.raises(TargetsError, match="has no chat template"):
        asyncio.run(build_targets(world["teacher"], tasks, tmp_path / "t2", cfg, engine_kind="hf"))
    assert not (tmp_path / "t2" / "manifest.json").exists()


#: World seeds of the quality test: seed 0 is the shipped world (the session's ``tiny``).
SEEDS = (0, 1, 2)


@pytest.fixture(scope="module")
def seeded_worlds(tiny: TinyWorld) -> dict[int, TinyWorld]:
    """The tiny world at each of ``SEEDS`` (teacher, students): cached like the shipped one,
    minutes each from a cold cache. Sync, like ``tiny``: the builds' own event loop never
    nests in a test's."""
    import asyncio

    from distill.distilled import ensure_distilled
    from distill.tiny import TinyRecipe, build_tiny_world

    worlds = {0: tiny}
    for seed in SEEDS[1:]:
        world = build_tiny_world(TinyRecipe().with_seed(seed))
        asyncio.run(ensure_distilled(world))
        worlds[seed] = world
    return worlds


@pytest.mark.slow
async def test_distilled_students_track_the_teacher_on_three_world_seeds(
    seeded_worlds: dict[int, TinyWorld],
) -> None:
    """Done-when of issues 7 and 19, on the validator's own numbers (student answers,
    teacher-forced), for three world seeds (every model's init and the students' batch order).

    The distilled student and the undistilled one share architecture, init seed and step count;
    only the training signal differs (teacher top-K vs task text). Held-out prompts come from
    the world's own families, in the slice of prompt space no model trained on. The bar: forward
    KL along the students' greedy answers at least 30 % below cross-entropy's on the mean of the
    seeds' ratios, below it on every seed, and correctness within 10 points of the teacher's on
    every seed. Measured numbers: docs/benchmarks.md (distillation quality).
    """
    from distill.evaluate import evaluate
    from distill.tiny import heldout_tasks

    ratios = {}
    for seed, world in seeded_worlds.items():
        assert world.distilled is not None
        d, ce, teacher = await evaluate(
            [world.distilled, world.undistilled, world.teacher],
            world.teacher,
            heldout_tasks(world),
            engine_kind="hf",
            k=16,
            max_tokens=24,
            temperature=0.0,
        )
        ratios[seed] = d.forward_kl / ce.forward_kl
        print(
            f"seed {seed}: forward KL distilled {d.forward_kl:.4f}, cross-entropy "
            f"{ce.forward_kl:.4f} (ratio {ratios[seed]:.3f}); correct {d.correctness:.3f} "
            f"vs teacher {teacher.correctness:.3f}"
        )
        assert ratios[seed] < 1.0, (seed, d, ce)
        assert abs(d.correctness - teacher.correctness) <= 0.10, (seed, d, teacher)
    assert sum(ratios.values()) / len(ratios) <= 0.7, ratios


def test_a_refused_resume_names_the_setting_that_differs(
    world: dict[str, Path], tmp_path: Path
) -> None:
    cfg = TrainConfig(steps=2, batch=4, warmup=1, eval_sequences=4, save_every=1)
    train(world["student"], world["targets"], tmp_path / "o", cfg, progress=False)
    other = TrainConfig(steps=2, batch=4, warmup=1, eval_sequences=4, save_every=1, lr=0.01)
    with pytest.raises(TargetsError, match=r"config\.lr: 0\.003 -> 0\.01"):
        train(world["student"], world["targets"], tmp_path / "o", other, progress=False)


def test_distill_targets_cli_reports_progress_without_a_terminal(
    world: dict[str, Path], tmp_path: Path
) -> None:
    """Progress lines on a pipe (no terminal for the bar), ``--set`` taken by the subcommand,
    and the trained weights readable by others (a miner serves them)."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "subnet.cli",
            "distill",
            "targets",
            "--teacher",
            str(world["teacher"]),
            "--prompts",
            "tasks:6:3",
            "--out",
            str(tmp_path / "t"),
            "--engine",
            "hf",
            "--k",
            "4",
            "--max-tokens",
            "4",
            "--shard-size",
            "2",
            "--batch",
            "2",
            "--set",
            "chain.netuid=3",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "targets: 6 prompts in 3 shards (0 already written)" in out.stderr
    for i in (1, 2, 3):
        assert f"targets: shard {i}/3 written" in out.stderr


def test_trained_weights_are_readable_by_others(world: dict[str, Path], tmp_path: Path) -> None:
    import stat

    cfg = TrainConfig(steps=1, batch=4, warmup=1, eval_sequences=4, save_every=-1)
    train(world["student"], world["targets"], tmp_path / "s", cfg, progress=False)
    mode = stat.S_IMODE((tmp_path / "s" / "model.safetensors").stat().st_mode)
    assert mode == 0o644, oct(mode)


async def test_eval_warms_the_student_up_before_timing_it(world: dict[str, Path]) -> None:
    """The first engine call (kernels, caches, vLLM's graphs) is not counted in tokens/s: one
    untimed, unscored stream comes first, then one timed stream per prompt (issue 17)."""
    from collections.abc import AsyncIterator, Sequence

    from distill.evaluate import student_answers
    from subnet.engine import Completion, SamplingParams, load_engine

    engine = load_engine("hf", world["teacher"])
    calls: list[list[int]] = []

    class Recording:
        info = engine.info

        async def generate_stream(
            self, prompt: Sequence[int], params: SamplingParams
        ) -> AsyncIterator[Completion]:
            calls.append(list(prompt))
            async for chunk in engine.generate_stream(prompt, params):
                yield chunk

    prompts = [[1, 2, 3, i] for i in range(4, 9)]
    answers = await student_answers(
        Recording(),  # type: ignore[arg-type]
        prompts,
        k=4,
        max_tokens=4,
        temperature=1.0,
        seed=0,
    )
    assert calls == [prompts[0], *prompts] and len(answers) == len(prompts)
    assert all(a.total_s > 0 and len(a.completion.token_ids) for a in answers)
    await engine.close()
