"""How commands are written to Redis: with hiredis's packer, as redis-py's own sync client does.

redis-py's asyncio connections pack every command in Python (an isinstance check and an encode
per argument, about 9 µs for an HSET of a decision); its sync connections use hiredis's packer
(about 2 µs) whenever hiredis is installed, which it is here (pyproject pins it). A worker writes
a dozen or more commands per event, so the asyncio connections are given the same packer. It
is redis-py's own (HiredisRespSerializer): the same bytes for every argument type, the same
DataError for what Redis cannot take (None, a bool), the same split of "CONFIG GET"-style
command names (tests/test_redis_wire.py holds them side by side).

Called once per process at its start (engine/cli.py, the tests' conftest), before any client
exists: it replaces a method of redis-py's connection class, for every client of the process.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio.connection import AbstractConnection
from redis.connection import HiredisRespSerializer
from redis.utils import HIREDIS_AVAILABLE

_PACKER = HiredisRespSerializer()


def _pack_command(self: AbstractConnection, *args: Any) -> list[bytes]:
    return _PACKER.pack(*args)


def pack_with_hiredis() -> bool:
    """Make every asyncio Redis connection of this process pack commands with hiredis.
    False (and nothing changed) when hiredis is not installed."""
    if not HIREDIS_AVAILABLE:
        return False
    AbstractConnection.pack_command = _pack_command  # type: ignore[method-assign]
    return True
