"""The selective adversary's oracle: from public information only (block hashes, the request,
the subnet's published task families) it recovers the validator's step and task and applies the
old public selection rule, so it knows exactly what that rule would check."""

from __future__ import annotations

from tokenizers import Tokenizer

from distill.tasks import generate_tasks
from neurons.demo_fixtures.oracle import PublicOracle, old_public_rule
from neurons.validator.judge import query_seed

FAMILIES = ("add", "sort", "reverse", "count", "copy")


def _oracle(tok: Tokenizer, hashes: dict[int, str], fraction: float) -> PublicOracle:
    async def head() -> int:
        return max(hashes)

    async def block_hash(b: int) -> str | None:
        return hashes.get(b)

    async def uid() -> int:
        return 7

    return PublicOracle(
        head, block_hash, uid, FAMILIES, 4, fraction, lambda t: list(tok.encode(t).ids)
    )


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


def test_the_old_rule_checks_about_its_fraction() -> None:
    hits = sum(old_public_rule("0xab", str(u % 13), f"t{u}", 0.3) for u in range(5000))
    assert 0.27 < hits / 5000 < 0.33
    assert old_public_rule("s", "1", "t", 1.0)
