"""Counter-based randomness for the simulator.

Two sources, both pure functions of their inputs:

- ``stream(seed, purpose)``: a numpy ``Generator`` over the Philox counter-based bit
  generator keyed by ``(seed, purpose)``, for the draws made once while the cluster is
  built (org chart, submissions, requests, durations). Each purpose has its own key, so
  adding draws to one purpose never shifts another.
- ``uniform(key, salt, counter)``: a splitmix64 hash of ``(key, salt, counter)`` mapped
  to [0, 1), for values that must be a function of an instant (per-minute utilisation,
  idle stretches). Nothing is drawn in sequence, so any query window sees the same value
  for the same minute.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

_U64 = np.uint64
_GOLDEN = _U64(0x9E3779B97F4A7C15)
_MUL1 = _U64(0xBF58476D1CE4E5B9)
_MUL2 = _U64(0x94D049BB133111EB)
_MASK64 = (1 << 64) - 1
_TO_UNIT = 2.0**-53


def stream(seed: int, purpose: int) -> np.random.Generator:
    """The Philox generator for one purpose of one seed."""
    return np.random.Generator(np.random.Philox(key=[seed & _MASK64, purpose & _MASK64]))


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on a uint64 array (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = np.asarray(x, dtype=_U64) + _GOLDEN
        z = (z ^ (z >> _U64(30))) * _MUL1
        z = (z ^ (z >> _U64(27))) * _MUL2
        return np.asarray(z ^ (z >> _U64(31)), dtype=_U64)


def uniform(key: np.ndarray | int, salt: int, counter: np.ndarray | int) -> np.ndarray:
    """Uniform [0, 1) floats, one per broadcast element of ``key`` and ``counter``."""
    k = np.asarray(key & _MASK64, dtype=_U64) if isinstance(key, int) else key.astype(_U64)
    c = np.asarray(counter, dtype=np.int64).astype(_U64)
    with np.errstate(over="ignore"):
        salted = k ^ _salt_mix(salt)
        h = mix64(mix64(salted) ^ c)
    return (h >> _U64(11)).astype(np.float64) * _TO_UNIT


@lru_cache(maxsize=256)
def _salt_mix(salt: int) -> np.ndarray:
    """``mix64`` of a salt (a handful of constants, each hashed once)."""
    mixed = mix64(np.asarray(salt & _MASK64, dtype=_U64))
    mixed.flags.writeable = False
    return mixed


def keys(seed: int, n: int) -> np.ndarray:
    """One 64-bit key per workload index, derived from the seed only."""
    base = mix64(np.asarray(seed & _MASK64, dtype=_U64))
    return mix64(np.arange(n, dtype=_U64) ^ base)
