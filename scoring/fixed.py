"""Fixed-point arithmetic as substrate-fixed does it, on Python ints holding the raw bits.

The chain computes Yuma in I32F32 (weights, stake shares, bonds), I64F64 (stake normalisation)
and I96F32 (rao scaling). Reproducing its numbers bit for bit needs its rounding: products are
floored (``(a*b) >> frac``), quotients truncate toward zero, division by zero yields 0 (the
pallet's ``safe_div``), and every result saturates at the type's range. A value here is the raw
integer ``x * 2**frac``; helper names say which type they treat it as.
"""

from __future__ import annotations

import math

FRAC32 = 32
ONE32 = 1 << FRAC32
I64_MIN, I64_MAX = -(1 << 63), (1 << 63) - 1
I128_MIN, I128_MAX = -(1 << 127), (1 << 127) - 1
U16_MAX = 65535
U64_MAX = (1 << 64) - 1


def _sat(x: int, lo: int, hi: int) -> int:
    return lo if x < lo else hi if x > hi else x


def sat32(x: int) -> int:
    """Saturate a raw value to the I32F32 range (64-bit signed)."""
    return _sat(x, I64_MIN, I64_MAX)


def from_int(v: int) -> int:
    """I32F32 of an integer (saturating)."""
    return sat32(v << FRAC32)


def mul(a: int, b: int) -> int:
    """I32F32 saturating multiply; the product is floored like substrate-fixed's shift."""
    return sat32((a * b) >> FRAC32)


def div(a: int, b: int) -> int:
    """I32F32 ``safe_div``: truncating toward zero, 0 when ``b`` is 0."""
    if b == 0:
        return 0
    num = a << FRAC32
    q = abs(num) // abs(b)
    return sat32(q if (num >= 0) == (b > 0) else -q)


def add(a: int, b: int) -> int:
    return sat32(a + b)


def sub(a: int, b: int) -> int:
    return sat32(a - b)


def u16_proportion(v: int) -> int:
    """``v / 65535`` as I32F32 (how kappa, bonds penalty, alpha bounds and Yuma3 bonds read)."""
    return div(from_int(v), from_int(U16_MAX))


def to_u16_proportion(x: int) -> int:
    """Storage form of a proportion: ``floor(x * 65535)`` saturated to u16."""
    return _sat(mul(x, from_int(U16_MAX)) >> FRAC32, 0, U16_MAX)


def to_float(x: int) -> float:
    return x / ONE32


def from_float(v: float) -> int:
    """I32F32 nearest to a float (used only for the transcendental in liquid alpha)."""
    return sat32(round(v * ONE32))


def exp_safe(x: int) -> int:
    """``exp`` of an I32F32, input clamped to [-20, 20].

    The chain evaluates a substrate-fixed series; this uses the float exponential rounded to
    I32F32, which agrees to a few units in the last place (about 1e-9 relative).
    """
    lo, hi = from_int(-20), from_int(20)
    x = _sat(x, lo, hi)
    return from_float(math.exp(to_float(x)))


# ---- I64F64 (stake normalisation) ----------------------------------------------------------

FRAC64 = 64


def to_fixed64(v: int) -> int:
    """I64F64 of an integer rao amount (saturating at the 128-bit range)."""
    return _sat(v << FRAC64, I128_MIN, I128_MAX)


def div64(a: int, b: int) -> int:
    """I64F64 ``safe_div`` (truncating, 0 on division by zero)."""
    if b == 0:
        return 0
    num = a << FRAC64
    q = abs(num) // abs(b)
    return _sat(q if (num >= 0) == (b > 0) else -q, I128_MIN, I128_MAX)


def fixed64_to_u64(x: int) -> int:
    return _sat(x >> FRAC64, 0, U64_MAX)


def fixed64_to_fixed32(x: int) -> int:
    """Drop 32 fractional bits (floor) and saturate to I32F32."""
    return sat32(x >> (FRAC64 - FRAC32))


# ---- I96F32 (rao scaling) -----------------------------------------------------------------


def rao_share(share: int, rao: int) -> int:
    """``floor(I96F32(share) * I96F32(rao))`` as u64, as the epoch scales emission shares."""
    e = _sat(rao << FRAC32, I128_MIN, I128_MAX)
    prod = _sat((share * e) >> FRAC32, I128_MIN, I128_MAX)
    return _sat(prod >> FRAC32, 0, U64_MAX)
