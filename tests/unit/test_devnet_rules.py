"""Pure devnet rules: IP validity, weight upscaling, block hashes, pruning choice, v3 shapes."""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from subnet.chain.devnet import hparams
from subnet.chain.devnet.clock import block_hash, block_of
from subnet.chain.devnet.pallet import _max_upscale, _prune_candidate, _valid_ip


def _v4(text: str) -> int:
    return int(ipaddress.IPv4Address(text))


def test_loopback_rules_match_the_pallet():
    assert not _valid_ip(_v4("127.0.0.1"), 4)
    assert _valid_ip(_v4("127.0.0.2"), 4)
    assert _valid_ip(0, 4)  # 0.0.0.0 is accepted (the metagraph then shows no axon)
    assert not _valid_ip(2**32 - 1, 4) and not _valid_ip(2**32, 4)
    assert not _valid_ip(1, 6)  # ::1
    assert _valid_ip(int(ipaddress.IPv6Address("fd00::2")), 6)


@given(st.lists(st.integers(0, 65535), min_size=1, max_size=20))
def test_max_upscale_keeps_order_and_tops_out(weights):
    out = _max_upscale(weights)
    top = max(weights)
    if top == 0 or top > 32768:
        assert out == weights
    else:
        assert max(out) == 65535
        assert all(
            out[i] <= out[j]
            for i in range(len(weights))
            for j in range(len(weights))
            if weights[i] <= weights[j]
        )


@given(st.integers(0, 2**40))
def test_block_hash_round_trips(block):
    assert block_of("ab" * 16, block_hash("ab" * 16, block)) == block
    assert block_of("cd" * 16, block_hash("ab" * 16, block)) is None


def test_prune_picks_lowest_emission_and_spares_the_owner():
    rows = [
        {"uid": 0, "hotkey": "owner", "emission": 0, "registered_at": 0},
        {"uid": 1, "hotkey": "a", "emission": 5, "registered_at": 0},
        {"uid": 2, "hotkey": "b", "emission": 1, "registered_at": 3},
        {"uid": 3, "hotkey": "c", "emission": 1, "registered_at": 2},
    ]
    assert _prune_candidate(rows, "owner", block=1000, immunity=10) == 3  # type: ignore[arg-type]  # older wins the tie


def test_v3_entries_have_the_decoded_tags():
    entries = {e["name"]: e["value"] for e in hparams.v3_entries(hparams.DEFAULTS)}
    assert entries["kappa"] == {"U16": 32767}
    assert entries["weights_rate_limit"] == {"U64": 100}
    assert entries["yuma3_enabled"] == {"Bool": True}
    assert entries["alpha_sigmoid_steepness"] == {"I32F32": {"bits": 1000 << 32}}
    assert entries["activity_cutoff"] == {"U16": 13889 * 360 // 1000}
