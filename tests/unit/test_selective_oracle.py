"""The selective adversary's oracle: from public information only (block hashes, the request,
the subnet's published task families and prompt files) it recovers the validator's step and task
and applies the old public selection rule, so it knows exactly what that rule would check."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from tokenizers import Tokenizer

from distill.tasks import generate_tasks
from neurons.demo_fixtures.oracle import PublicOracle, old_public_rule
from neurons.validator.judge import query_seed

FAMILIES = ("add", "sort", "reverse", "count", "copy")


def _chain(
    hashes: dict[int, str],
) -> tuple[
    Callable[[], Awaitable[int]],
    Callable[[int], Awaitable[str | None]],
    Callable[[], Awaitable[int]],
]:
    async def head() -> int:
        return max(hashes)

    async def block_hash(b: int) -> str | None:
        return hashes.get(b)

    async def uid() -> int:
        return 7

    return head, block_hash, uid


def _oracle(tok: Tokenizer, hashes: dict[int, str], fraction: float) -> PublicOracle:
    return PublicOracle(*_chain(hashes), FAMILIES, 4, fraction, lambda t: list(tok.encode(t).ids))


async def test_the_oracle_finds_the_step_and_task_and_applies_the_old_rule(tiny) -> None:
    tok = Tokenizer.from_file(str(tiny.teacher / "tokenizer.json"))
    hashes = {b: f"0x{b:064x}" for b in range(90, 101)}
    step = hashes[95]  # the validator's step ran a few blocks ago
    oracle = _oracle(tok, hashes, 0.5)
    verdicts = []
    for i, task in enumerate(generate_tasks(step, 4, FAMILIES)):
        ids = list(tok.encode(task.prompt).ids)
        got = await oracle.believed_checked(ids, query_seed(step, i))
        assert got == old_public_rule(step, "7", task.task_id, 0.5)
        verdicts.append(got)
    assert None not in verdicts
    # A request it cannot place (unknown seed, or no seed) gets no verdict: answer honestly.
    assert await oracle.believed_checked([1, 2, 3], 12345) is None
    assert await oracle.believed_checked([1, 2, 3], None) is None


async def test_the_oracle_finds_prompt_file_rows_whatever_the_step_drew(tiny, tmp_path) -> None:
    """A subnet that asks a chat dataset (``validator.prompt_sources``, a model with a chat
    template): the oracle renders every row as validators do and finds the row a request
    holds, whatever the validator's no-repeat window made it draw."""
    from neurons.demo_fixtures.oracle import published_prompts
    from neurons.validator.prompts import PromptSelector
    from subnet.config import load_config
    from subnet.tokenizer import ModelTokenizer
    from tests.harness.chat_model import chat_model

    folder = chat_model(tiny.tokenizer_dir, tmp_path / "chat")
    rows = [{"messages": [{"role": "user", "content": t.prompt}]} for t in generate_tasks(3, 30)]
    data = tmp_path / "chat.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    vc = load_config(None, overrides={"validator.prompt_sources": str(data)}, env={}).validator
    tok = ModelTokenizer(folder)
    families, files = published_prompts(vc, tok)
    assert families == () and len(files) == 30
    hashes = {b: f"0x{b:064x}" for b in range(90, 101)}
    oracle = PublicOracle(*_chain(hashes), families, 4, 0.5, tok.encode_prompt, files=files)
    selector = PromptSelector.load(vc.prompt_sources, vc.task_families, tok, max_prompt_tokens=99)
    step = hashes[96]
    recent = {t.digest for t in selector.select(hashes[93], 4).tasks}
    asked = selector.select(step, 4, recent)
    for i, (task, ids) in enumerate(zip(asked.tasks, asked.token_ids, strict=True)):
        assert task.messages and ids == tok.encode_prompt(task.content)
        got = await oracle.believed_checked(ids, query_seed(step, i))
        assert got == old_public_rule(step, "7", task.task_id, 0.5)
    # Synthetic prompts are not asked on this subnet: no verdict, answer honestly.
    synthetic = tok.encode_prompt(generate_tasks(step, 1)[0].prompt)
    assert await oracle.believed_checked(synthetic, query_seed(step, 0)) is None


def test_the_old_rule_checks_about_its_fraction() -> None:
    hits = sum(old_public_rule("0xab", str(u % 13), f"t{u}", 0.3) for u in range(5000))
    assert 0.27 < hits / 5000 < 0.33
    assert old_public_rule("s", "1", "t", 1.0)
