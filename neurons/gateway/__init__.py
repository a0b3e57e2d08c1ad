"""The gateway: an OpenAI-compatible API that brings users' requests to the subnet's miners.

Run by a validator operator next to the validator (``subnet gateway``): API keys with rate
limits and token quotas (``keys``, ``access``), requests routed to the best-scored miners and
signed with the validator's hotkey (``routing``, ``upstream``), streamed back with failover
(``serving``), a fraction of the signed answers handed to the validator to verify like its own
(``neurons/validator/inbox.py``). ``app`` is the HTTP layer, ``main`` the process.
"""
