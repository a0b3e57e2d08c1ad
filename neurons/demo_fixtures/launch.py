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

import sys
from collections.abc import Callable, Sequence
from typing import Any


def engine_factory(kind: str, other: str) -> Callable[..., Any]:
    """An engine factory that wraps the honest engine of ``--model`` as adversary ``kind``."""
    from neurons.demo_fixtures.adversary import KINDS, wrap_engine
    from subnet.engine import load_engine

    if kind not in KINDS:
        raise SystemExit(f"demo adversary: unknown adversary {kind!r}; known: {KINDS}")

    def load(engine_kind: Any, model_path: Any, **kwargs: Any) -> Any:
        committed = load_engine(engine_kind, model_path, **kwargs)
        return wrap_engine(kind, committed, other=load_engine(engine_kind, other, **kwargs))

    return load


def main(argv: Sequence[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    from neurons.miner.cli import run
    from subnet.cli import main as subnet_main

    factory = engine_factory(argv[0], argv[1])
    return subnet_main(["miner", *argv[2:]], run=lambda args: run(args, factory))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
