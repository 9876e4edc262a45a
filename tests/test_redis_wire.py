"""The hiredis packer the processes use writes the same bytes redis-py's own Python packer would."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio.connection import Connection
from redis.connection import PythonRespSerializer
from redis.exceptions import DataError

from engine.redis_wire import pack_with_hiredis

ARGUMENT = st.one_of(st.text(), st.binary(), st.integers(), st.floats(allow_nan=False))


def _python_packed(*args: object) -> bytes:
    encoder = Connection().encoder
    return b"".join(PythonRespSerializer(6000, encoder.encode).pack(*args))


def test_the_processes_pack_with_hiredis() -> None:
    assert pack_with_hiredis() is True


@given(st.lists(ARGUMENT, max_size=8))
def test_same_bytes_as_redis_py_for_any_arguments(args: list[object]) -> None:
    pack_with_hiredis()
    command = ("HSET", "hookrules:event:x", *args)
    assert b"".join(Connection().pack_command(*command)) == _python_packed(*command)


def test_spaced_command_names_are_split_as_redis_py_splits_them() -> None:
    pack_with_hiredis()
    assert b"".join(Connection().pack_command("CONFIG GET", "maxmemory")) == _python_packed("CONFIG GET", "maxmemory")


@pytest.mark.parametrize("bad", [None, True, {"a": 1}])
def test_what_redis_cannot_take_is_refused_before_sending(bad: object) -> None:
    pack_with_hiredis()
    with pytest.raises(DataError):
        Connection().pack_command("SET", "k", bad)
