"""Seeded task families (prompt files: tests/unit/test_prompts.py)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distill.tasks import (
    ANSWER_MARK,
    FAMILIES,
    Task,
    check_answer,
    generate_tasks,
    render,
)

BLOCK_HASH = "0x5f1c9a0e3b7d2c4e6a8b0d1f3e5c7a9b2d4f6e8a0c1b3d5f7e9a2c4b6d8f0e1a"


def test_same_seed_same_batch() -> None:
    assert generate_tasks(BLOCK_HASH, 200) == generate_tasks(BLOCK_HASH, 200)


def test_batch_is_a_prefix_of_a_larger_batch() -> None:
    assert generate_tasks(7, 50) == generate_tasks(7, 120)[:50]


@pytest.mark.parametrize(
    "a, b", [(1, 2), (BLOCK_HASH, BLOCK_HASH[:-1] + "b"), (12, "12"), (b"\x01", b"\x02")]
)
def test_different_seeds_differ(a: int | str | bytes, b: int | str | bytes) -> None:
    assert [t.prompt for t in generate_tasks(a, 50)] != [t.prompt for t in generate_tasks(b, 50)]


@settings(max_examples=30, deadline=None)
@given(
    seed=st.one_of(st.integers(), st.binary(max_size=32), st.text(max_size=64)),
    n=st.integers(0, 300),
)
def test_batches_have_no_duplicates_and_valid_shape(seed: int | bytes | str, n: int) -> None:
    tasks = generate_tasks(seed, n)
    assert len(tasks) == n
    assert len({t.prompt for t in tasks}) == n
    assert len({t.task_id for t in tasks}) == n
    for t in tasks:
        assert t.family in FAMILIES
        assert t.prompt.endswith(ANSWER_MARK)
        assert t.answer is not None and t.answer.startswith(" ")
        assert check_answer(t, t.answer)


def test_ground_truth_is_right() -> None:
    for t in generate_tasks("truth", 300):
        assert t.answer is not None
        words = t.prompt.removesuffix(ANSWER_MARK).split()
        got = t.answer.split()
        if t.family == "add":
            assert got == [str(int(words[1]) + int(words[2]))]
        elif t.family == "sort":
            assert got == sorted(words[1:])
        elif t.family == "reverse":
            assert got == words[1:][::-1]
        elif t.family == "count":
            assert got == [str(words[3:].count(words[1]))]
        else:
            assert got == words[1:]


def test_family_subset_and_errors() -> None:
    assert {t.family for t in generate_tasks(3, 40, families=["add"])} == {"add"}
    with pytest.raises(ValueError, match="unknown task families"):
        generate_tasks(3, 4, families=["divide"])
    with pytest.raises(ValueError, match="empty"):
        generate_tasks(3, 4, families=[])
    with pytest.raises(ValueError, match="non-negative"):
        generate_tasks(3, -1)
    with pytest.raises(TypeError):
        generate_tasks(1.5, 3)  # type: ignore[arg-type]


def test_impossible_batch_is_refused() -> None:
    # count has at most 4 targets x sum(4**k for k in 3..8) prompts, copy far more; add has
    # exactly 10,000 prompts, so 10,001 distinct add tasks cannot exist.
    with pytest.raises(ValueError, match="distinct"):
        generate_tasks(0, 10_001, families=["add"])


def test_check_answer_is_exact_after_strip() -> None:
    t = Task("add", "add 2 3 =", " 5", "id")
    assert check_answer(t, " 5")
    assert check_answer(t, "5\n")
    assert not check_answer(t, " 5 5")
    assert not check_answer(t, " 6")
    assert not check_answer(t, "")
    assert not check_answer(Task("jsonl", "hi", None, "id"), "anything")
    assert render(t) == "add 2 3 = 5"
