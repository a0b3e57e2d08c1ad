"""The localnet's cheating miners: the real ``subnet miner`` process behind an adversary engine.

    python -m neurons.demo_fixtures.launch KIND OTHER_MODEL <subnet miner arguments...>

Everything a miner does (registration, identity commitment of ``--model``, signed HTTP
serving) is the real node; only the engine it loads is wrapped by
:func:`neurons.demo_fixtures.adversary.wrap_engine` with ``other`` loaded from
``OTHER_MODEL`` on the same engine kind: ``wrong-model`` answers with it, ``fabricated``
reports its distributions. The wrapped engine goes in through the miner's ``engine_factory``
seam (:func:`neurons.miner.main.serve`). A demo fixture: never run it on a real network.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Sequence
from typing import Any


def engine_factory(kind: str, other: str, config: Any = None) -> Callable[..., Any]:
    """An engine factory that wraps the honest engine of ``--model`` as adversary ``kind``;
    ``config`` (the miner's ``SubnetConfig``: the subnet's public settings) feeds the
    ``selective`` adversary's oracle."""
    from neurons.demo_fixtures.adversary import KINDS, wrap_engine
    from subnet.engine import load_engine

    if kind not in KINDS:
        raise SystemExit(f"demo adversary: unknown adversary {kind!r}; known: {KINDS}")

    def load(engine_kind: Any, model_path: Any, **kwargs: Any) -> Any:
        committed = load_engine(engine_kind, model_path, **kwargs)
        oracle = public_oracle(config, model_path) if kind == "selective" else None
        return wrap_engine(
            kind, committed, other=load_engine(engine_kind, other, **kwargs), oracle=oracle
        )

    return load


class _ChainReads:
    """Block hashes, the head and our uid from the miner's own network, opened on first use
    (the engine is built before the event loop serves)."""

    def __init__(self, network: str, netuid: int, hotkey: str) -> None:
        self.network, self.netuid, self.hotkey = network, netuid, hotkey
        self._stack: contextlib.AsyncExitStack | None = None
        self._chain: Any = None
        self._uid: int | None = None

    async def _open(self) -> Any:
        if self._chain is None:
            from subnet.chain.network import open_chain

            self._stack = contextlib.AsyncExitStack()
            self._chain = await self._stack.enter_async_context(open_chain(self.network))
        return self._chain

    async def head(self) -> int:
        return int(await (await self._open()).block())

    async def block_hash(self, block: int) -> str | None:
        h = await (await self._open()).block_hash(block)
        return None if h is None else str(h)

    async def uid(self) -> int | None:
        if self._uid is None:
            self._uid = await (await self._open()).is_registered(self.netuid, self.hotkey)
        return self._uid

    async def close(self) -> None:
        if self._stack is not None:
            await self._stack.aclose()


def public_oracle(config: Any, model_path: Any) -> Any:
    """The selective adversary's oracle from the subnet's public settings and chain: its task
    families and prompt files (``validator.prompt_sources``), rendered as validators render them."""
    from neurons.demo_fixtures.oracle import PublicOracle, published_prompts
    from subnet.tokenizer import ModelTokenizer
    from subnet.wallets import hotkey_address, load_wallet

    if config is None:
        raise SystemExit("demo adversary: selective needs the miner's config")
    wallet = load_wallet(config.wallet.name, config.wallet.hotkey, config.wallet.path)
    reads = _ChainReads(config.chain.network, config.chain.netuid, hotkey_address(wallet))
    tokenizer = ModelTokenizer(model_path)
    families, files = published_prompts(config.validator, tokenizer)
    return PublicOracle(
        head=reads.head,
        block_hash=reads.block_hash,
        uid=reads.uid,
        families=families,
        tasks_per_step=config.validator.tasks_per_step,
        fraction=config.verify.spot_check_fraction,
        encode=tokenizer.encode_prompt,
        files=files,
        close=reads.close,
    )


def main(argv: Sequence[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    from neurons.miner.cli import run
    from subnet.cli import main as subnet_main

    kind, other = argv[0], argv[1]
    return subnet_main(
        ["miner", *argv[2:]], run=lambda args: run(args, engine_factory(kind, other, args.config))
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
