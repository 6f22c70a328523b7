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
_S11, _S27, _S30, _S31 = _U64(11), _U64(27), _U64(30), _U64(31)
_MASK64 = (1 << 64) - 1
_GOLDEN_INT, _MUL1_INT, _MUL2_INT = int(_GOLDEN), int(_MUL1), int(_MUL2)
_TO_UNIT = 2.0**-53


def stream(seed: int, purpose: int) -> np.random.Generator:
    """The Philox generator for one purpose of one seed."""
    return np.random.Generator(np.random.Philox(key=[seed & _MASK64, purpose & _MASK64]))


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on a uint64 array (wrapping arithmetic)."""
    return _mix_in_place(np.array(x, dtype=_U64))


def _mix_in_place(z: np.ndarray) -> np.ndarray:
    """``mix64`` of the uint64 array ``z``, worked in ``z`` itself. Whatever its shape
    (0-d too), an array wraps without the overflow warnings of numpy's scalars."""
    z += _GOLDEN
    z ^= z >> _S30
    z *= _MUL1
    z ^= z >> _S27
    z *= _MUL2
    z ^= z >> _S31
    return z


def _mix_int(x: int) -> int:
    """``mix64`` of one value, on Python ints (for the per-workload keys)."""
    z = (x + _GOLDEN_INT) & _MASK64
    z = ((z ^ (z >> 30)) * _MUL1_INT) & _MASK64
    z = ((z ^ (z >> 27)) * _MUL2_INT) & _MASK64
    return z ^ (z >> 31)


def uniform(key: np.ndarray | int, salt: int, counter: np.ndarray | int) -> np.ndarray:
    """Uniform [0, 1) floats, one per broadcast element of ``key`` and ``counter``:
    ``mix64(mix64(key ^ mix64(salt)) ^ counter)``, its top 53 bits over ``2**53``."""
    c = np.asarray(counter, dtype=np.int64).astype(_U64)  # a copy, worked in place
    if isinstance(key, int):
        c ^= _keyed(key & _MASK64, salt)
        h = c
    else:
        k = np.array(key, dtype=_U64)  # a copy, an array even of a numpy scalar
        k ^= _U64(_mix_int(salt & _MASK64))
        h = _mix_in_place(k) ^ c
    h = _mix_in_place(h)
    h >>= _S11
    out = h.astype(np.float64)
    out *= _TO_UNIT
    return out


@lru_cache(maxsize=4096)
def _keyed(key: int, salt: int) -> np.uint64:
    """``mix64(key ^ mix64(salt))`` of one key: the same for every minute of a workload."""
    return _U64(_mix_int(key ^ _mix_int(salt & _MASK64)))


def keys(seed: int, n: int) -> np.ndarray:
    """One 64-bit key per workload index, derived from the seed only."""
    base = mix64(np.asarray(seed & _MASK64, dtype=_U64))
    return mix64(np.arange(n, dtype=_U64) ^ base)
