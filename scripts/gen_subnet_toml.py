"""Regenerate the repository's documented default ``subnet.toml`` from the declared config.

Run after adding or changing a config field: ``python scripts/gen_subnet_toml.py``. A test
checks that the committed file equals the built-in defaults and documents every key.
"""

from __future__ import annotations

import sys
from pathlib import Path

from subnet.config import SubnetConfig, to_toml

HEADER = """\
# subnet.toml: the scoring and incentive configuration a subnet owner publishes and every
# validator runs (miners read the [miner] limits). Every key is documented with its accepted
# range; an unknown key or an out-of-range value stops the node with a one-line error.
# Precedence: built-in defaults < this file < SUBNET_<SECTION>__<KEY> env vars < CLI flags.
# Generated from the declared defaults by scripts/gen_subnet_toml.py; edit values freely.

"""


def main(argv: list[str] | None = None) -> int:
    out = Path(__file__).resolve().parent.parent / "subnet.toml"
    out.write_text(HEADER + to_toml(SubnetConfig()))
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
