"""The localnet's cheating miners: the real ``subnet miner`` process behind an adversary engine.

    python -m neurons.localnet_adversary KIND OTHER_MODEL <subnet miner arguments...>

Everything a miner does (registration, identity commitment of ``--model``, signed HTTP
serving) is the real node; only the engine it loads is wrapped by
:func:`neurons.miner.adversary.wrap_engine` with ``other`` loaded from ``OTHER_MODEL`` on the
same engine kind: ``wrong-model`` answers with it, ``fabricated`` reports its distributions.
The miner node has no engine seam of its own yet, so the wrapping happens where the node asks
``subnet.engine`` for its engine. A demo fixture: never run it on a real network.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any


def install(kind: str, other: str) -> None:
    """Make ``subnet.engine.load_engine`` hand out the adversary around the honest engine."""
    import subnet.engine as engines
    from neurons.miner.adversary import KINDS, wrap_engine

    if kind not in KINDS:
        raise SystemExit(f"localnet_adversary: unknown adversary {kind!r}; known: {KINDS}")
    honest_loader = engines.load_engine

    def load(engine_kind: Any, model_path: Any, **kwargs: Any) -> Any:
        committed = honest_loader(engine_kind, model_path, **kwargs)
        return wrap_engine(kind, committed, other=honest_loader(engine_kind, other, **kwargs))

    engines.load_engine = load  # type: ignore[assignment]


def main(argv: Sequence[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    install(argv[0], argv[1])
    from subnet.cli import main as subnet_main

    return subnet_main(["miner", *argv[2:]])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
