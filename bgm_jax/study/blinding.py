"""Blinding: where each rater sees method A, in which order they see the examples, and un-blinding.

Both come from an HMAC-SHA256 of the study's secret (random, written when the study is created, never
sent to a rater) with the rater's name and the example's key, so they are

- random across raters and examples (neither the raters nor the images decide them),
- fixed for one rater and example: a reload, another browser or a restarted server shows the same
  placement, so a changed vote is a vote about the same picture,
- unpredictable without the study file.

The page only ever speaks of "left" and "right"; the server maps them to A and B here.
"""

from __future__ import annotations

import hashlib
import hmac

from bgm_jax.study.scale import LEVELS

SIDES = ("left", "right")


def _digest(secret: bytes, purpose: str, rater: str, key: str) -> bytes:
    message = f"{purpose}\0{rater}\0{key}".encode()
    return hmac.new(secret, message, hashlib.sha256).digest()


def a_side(secret: bytes, rater: str, key: str) -> str:
    """The side, ``"left"`` or ``"right"``, on which ``rater`` sees method A's result for example ``key``."""
    return SIDES[_digest(secret, "side", rater, key)[0] & 1]


def method_on(side: str, a_side_: str) -> str:
    """Which method, ``"a"`` or ``"b"``, is shown on ``side`` when A is on ``a_side_``."""
    if side not in SIDES or a_side_ not in SIDES:
        raise ValueError(f"sides are 'left' or 'right', got {side!r} and {a_side_!r}")
    return "a" if side == a_side_ else "b"


def unblind(choice: int, a_side_: str) -> int:
    """A choice on the page (-10 = left much better ... +10 = right much better) as a score about the
    methods (-10 = A much better ... +10 = B much better), given the side A was shown on."""
    if choice not in LEVELS:
        raise ValueError(f"choice {choice!r} is not on the scale {LEVELS}")
    if a_side_ == "left":
        return choice  # left better = A better: negative either way
    if a_side_ == "right":
        return -choice
    raise ValueError(f"a_side must be 'left' or 'right', got {a_side_!r}")


def blind(score: int, a_side_: str) -> int:
    """The inverse of :func:`unblind`: the choice that shows ``score`` to a rater who sees A on ``a_side_``."""
    return unblind(score, a_side_)  # mirroring is its own inverse


def rater_order(secret: bytes, rater: str, keys: list[str]) -> list[str]:
    """The examples in the order ``rater`` meets them: a fixed shuffle per rater (against order effects)."""
    return sorted(keys, key=lambda key: (_digest(secret, "order", rater, key), key))
