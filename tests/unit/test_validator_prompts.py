"""What a validator asks: sources mixed by weight, seeded draws, the no-repeat window, bad rows.

Real SQLite stores hold the window (as the validator's does); the tokenizer is a tiny-world-like
one, copied with a chat template where chat rows need it.
"""

from __future__ import annotations

import json
from collections import Counter
from contextlib import closing
from pathlib import Path

import pytest

from distill.tasks import generate_tasks
from neurons.validator.prompts import SYNTHETIC, PromptSelector, parse_sources
from neurons.validator.store import EmaRow, StepRow, Store
from subnet.errors import ConfigError
from subnet.tokenizer import ModelTokenizer
from tests.harness.chat_model import chat_model, tiny_tokenizer

FAMILIES = ("add", "sort", "reverse", "count", "copy")
SEEDS = [f"0x{i:064x}" for i in range(1, 9)]


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_tokenizer(tmp_path_factory.mktemp("tok") / "tiny")


@pytest.fixture(scope="module")
def chat_dir(tok_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return chat_model(tok_dir, tmp_path_factory.mktemp("tok") / "chat")


def jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def selector(tok: Path, sources: list[str], **kw) -> PromptSelector:
    return PromptSelector.load(
        sources, FAMILIES, ModelTokenizer(tok), max_prompt_tokens=kw.pop("max_tokens", 100), **kw
    )


def run_steps(sel: PromptSelector, store: Store, seeds: list[str], n: int, window: int):
    """Draw and commit one step per seed, as the validator's step does; the draws."""
    out = []
    for step, seed in enumerate(seeds, start=1):
        asked = sel.select(seed, n, store.recent_prompt_digests(window))
        store.commit_step(
            StepRow(step, step, seed, "d", 0, 0, None, 0.0),
            [],
            [],
            [EmaRow(0, "hk", 0.0)],
            prompts=asked.rows,
        )
        out.append(asked)
    return out


def test_synthetic_only_draws_are_generate_tasks(tok_dir: Path) -> None:
    sel = selector(tok_dir, [SYNTHETIC])
    tok = ModelTokenizer(tok_dir)
    for seed in SEEDS[:3]:
        asked = sel.select(seed, 4)
        assert asked.tasks == generate_tasks(seed, 4, FAMILIES)
        assert asked.token_ids == [tok.encode_text(t.prompt) for t in asked.tasks]
        assert asked.repeats == 0 and {r.source for r in asked.rows} == {SYNTHETIC}


def test_two_validators_ask_the_same_prompts_step_after_step(tok_dir: Path, tmp_path: Path) -> None:
    data = jsonl(tmp_path / "p.jsonl", [{"prompt": f"question {i}"} for i in range(40)])
    sources = [f"{data}@2", SYNTHETIC]
    a, b = selector(tok_dir, sources), selector(tok_dir, sources)
    with closing(Store(tmp_path / "a.sqlite")) as sa, closing(Store(tmp_path / "b.sqlite")) as sb:
        asked_a = run_steps(a, sa, SEEDS, 5, window=4)
        asked_b = run_steps(b, sb, SEEDS, 5, window=4)
        assert [x.token_ids for x in asked_a] == [x.token_ids for x in asked_b]
        assert [x.rows for x in asked_a] == [x.rows for x in asked_b]
        assert sa.step_prompts(3) == asked_a[2].rows
    # another block, other prompts; both sources are used
    assert asked_a[0].token_ids != asked_a[1].token_ids
    assert {r.source for x in asked_a for r in x.rows} == {str(data), SYNTHETIC}


def test_the_no_repeat_window(tok_dir: Path, tmp_path: Path) -> None:
    data = jsonl(tmp_path / "p.jsonl", [{"prompt": f"question {i}"} for i in range(6)])
    sel = selector(tok_dir, [str(data)])
    with closing(Store(tmp_path / "s.sqlite")) as store:
        # window 2 steps, 2 prompts a step, 6 prompts: every 3 consecutive steps are disjoint
        asked = run_steps(sel, store, SEEDS, 2, window=2)
    digests = [{r.prompt_digest for r in a.rows} for a in asked]
    for i in range(len(digests) - 2):
        assert len(digests[i] | digests[i + 1] | digests[i + 2]) == 6
    assert all(a.repeats == 0 for a in asked)
    # a window wider than the dataset allows: prompts repeat, and the step says how many
    with closing(Store(tmp_path / "t.sqlite")) as store:
        asked = run_steps(sel, store, SEEDS[:4], 2, window=3)
    assert [a.repeats for a in asked] == [0, 0, 0, 2]
    assert all(len({r.prompt_digest for r in a.rows}) == 2 for a in asked)  # never in a batch
    # without a window, the same store asks freely (seeded draws only)
    assert sel.select(SEEDS[0], 2).rows == selector(tok_dir, [str(data)]).select(SEEDS[0], 2).rows


def test_prompts_are_deduplicated_across_sources_by_content(tok_dir: Path, tmp_path: Path) -> None:
    rows = [{"prompt": f"q{i}"} for i in range(3)]
    a, b = jsonl(tmp_path / "a.jsonl", rows), jsonl(tmp_path / "b.jsonl", rows)
    asked = selector(tok_dir, [str(a), str(b)]).select(SEEDS[0], 3)
    assert len({r.prompt_digest for r in asked.rows}) == 3
    with pytest.raises(ValueError, match="cannot draw 4 distinct prompts"):
        selector(tok_dir, [str(a), str(b)]).select(SEEDS[0], 4)


def test_sources_are_mixed_by_weight(tok_dir: Path, tmp_path: Path) -> None:
    a = jsonl(tmp_path / "a.jsonl", [{"prompt": f"a {i}"} for i in range(500)])
    b = jsonl(tmp_path / "b.jsonl", [{"prompt": f"b {i}"} for i in range(500)])
    sel = selector(tok_dir, [f"{a}@3", str(b)])
    counts = Counter(r.source for s in range(50) for r in sel.select(f"seed{s}", 8).rows)
    share = counts[str(a)] / 400
    assert 0.68 < share < 0.82, counts  # 0.75 expected; 400 seeded draws


def test_chat_rows_render_with_the_teachers_template(
    tok_dir: Path, chat_dir: Path, tmp_path: Path
) -> None:
    turns = [{"role": "system", "content": "add"}, {"role": "user", "content": "add 1 2 ="}]
    data = jsonl(tmp_path / "c.jsonl", [{"messages": turns, "answer": " 3"}, {"prompt": "hi"}])
    chat = ModelTokenizer(chat_dir)
    asked = selector(chat_dir, [str(data)]).select(SEEDS[0], 2)
    by_answer = {t.answer: ids for t, ids in zip(asked.tasks, asked.token_ids, strict=True)}
    assert chat.decode(by_answer[" 3"], skip_special_tokens=False) == (
        "<bos>system: add\nuser: add 1 2 =\nassistant:"
    )
    # plain prompts are one user turn once the teacher has a template
    assert chat.decode(by_answer[None], skip_special_tokens=False) == "<bos>user: hi\nassistant:"
    summary = selector(chat_dir, [str(data)]).summary()
    assert summary[0]["chat"] is True and summary[0]["prompts"] == 2


def test_rows_the_teacher_cannot_take_stop_the_start_or_are_counted(
    tok_dir: Path, tmp_path: Path
) -> None:
    rows: list[dict] = [
        {"prompt": "fine"},
        {"prompt": "ends early <eos> then more"},
        {"messages": [{"role": "user", "content": "hi"}]},
        {"prompt": "long " * 200},
        {"prompt": "also fine"},
    ]
    data = jsonl(tmp_path / "p.jsonl", rows)
    with pytest.raises(ConfigError, match=r"p\.jsonl:2: prompt contains the special token '<eos>'"):
        selector(tok_dir, [str(data)])
    rows.pop(1)
    jsonl(data, rows)
    with pytest.raises(ConfigError, match=r"p\.jsonl:2: .* has no chat template"):
        selector(tok_dir, [str(data)])
    rows.pop(1)
    jsonl(data, rows)
    with pytest.raises(ConfigError, match=r"p\.jsonl:2: \d+ prompt tokens; the teacher takes 100"):
        selector(tok_dir, [str(data)])
    rows[1:1] = [{"prompt": "<bos>"}, {"prompt": ""}]
    jsonl(data, rows)
    sel = selector(tok_dir, [str(data)], skip_bad_rows=True)
    [summary] = sel.summary()
    assert summary["prompts"] == 2 and summary["skipped"] == 3  # empty, special, too long
    asked = sel.select(SEEDS[0], 2)
    assert sorted(t.prompt for t in asked.tasks) == ["also fine", "fine"]


def test_source_entries(tmp_path: Path) -> None:
    assert [(s.name, s.weight) for s in parse_sources(["synthetic", "a.jsonl@2.5"])] == [
        ("synthetic", 1.0),
        ("a.jsonl", 2.5),
    ]
    assert parse_sources(["me@host/p.jsonl"])[0].name == "me@host/p.jsonl"
    for bad, reason in [
        (["a.jsonl@0"], "must be > 0"),
        (["a.jsonl@-1"], "must be > 0"),
        (["a.jsonl", "a.jsonl@2"], "listed twice"),
        (["@2"], "empty source"),
        ([], "at least one source"),
    ]:
        with pytest.raises(ConfigError, match=reason):
            parse_sources(bad)
    with pytest.raises(ConfigError, match=r"nope\.jsonl: no such file"):
        PromptSelector.load(["nope.jsonl"], FAMILIES, None, max_prompt_tokens=10)  # type: ignore[arg-type]


def test_bad_prompt_sources_stop_the_validator_before_it_loads_anything(tmp_path: Path) -> None:
    from neurons.validator.main import check_config
    from subnet.config import load_config

    def cfg(sources: str):
        return load_config(
            env={}, overrides={"validator.prompt_sources": sources, "validator.teacher": "/t"}
        )

    (tmp_path / "p.csv").write_text("prompt\n")
    jsonl(tmp_path / "ok.jsonl", [{"prompt": "hi"}])
    for sources, reason in [
        (f"{tmp_path}/nope.jsonl", "nope.jsonl: no such file"),
        (f"{tmp_path}/p.csv", "unknown format"),
        ("synthetic@x0", "no such file"),  # not a weight: a path that does not exist
        ("synthetic@0", "must be > 0"),
    ]:
        with pytest.raises(ConfigError, match=f"validator.prompt_sources: .*{reason}"):
            check_config(cfg(sources))
    check_config(cfg(f"synthetic@2, {tmp_path}/ok.jsonl"))


def test_an_endless_stream_of_taken_prompts_ends_the_draw(tok_dir: Path) -> None:
    """The synthetic stream never ends: a slot looks at a bounded number of candidates, so
    asking for more distinct prompts than a family has fails instead of spinning."""
    from itertools import cycle

    from neurons.validator.prompts import _draw

    [task] = generate_tasks("one", 1, ("add",))
    assert _draw(cycle([(task, [1])]), {task.digest}, frozenset(), limit=1000) is None
    assert _draw(cycle([(task, [1])]), set(), {task.digest}, limit=1000) == (task, [1], 1)
