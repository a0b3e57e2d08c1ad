"""The embedded devnet: a stateful chain in one SQLite file, spoken to by the real SDK.

>>> net = Devnet.create(path, block_time=0.25, clock="manual")
>>> netuid = net.add_subnet(owner_coldkey, owner_hotkey, tempo=10)
>>> client = bittensor.Client("local", substrate=net.substrate())
"""

from subnet.chain.devnet.errors import DevnetChainError, DevnetUnavailable
from subnet.chain.devnet.net import ALICE_SS58, Devnet
from subnet.chain.devnet.status import DevnetStatus, NeuronStatus, SubnetStatus

__all__ = [
    "ALICE_SS58",
    "Devnet",
    "DevnetChainError",
    "DevnetStatus",
    "DevnetUnavailable",
    "NeuronStatus",
    "SubnetStatus",
]
