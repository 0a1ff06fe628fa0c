"""The ``httpx`` the OpenAI SDK runs on: ``httpx2`` from openai 3, ``httpx`` before.

The pools, transports and timeouts handed to the SDK must come from the
library it runs on. An httpx 0.x client handed to openai 3 pools on
httpcore 1, whose cost per request grows with connections x waiting
requests: 4x less throughput at 100 fusions in flight
(``benchmarks/concurrency.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import openai

if TYPE_CHECKING:
    import httpx
elif int(openai.__version__.split(".", 1)[0]) >= 3:
    import httpx2 as httpx
else:
    import httpx

__all__ = ["httpx"]
