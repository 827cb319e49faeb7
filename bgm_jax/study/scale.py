"""The rating scale of the paper's user study (supplement Figure 4): five levels, in two frames.

On the page a rater picks a *choice* about what they see: -10 = the left image is much better, -5 =
slightly better, 0 = similar, +5 / +10 = the right image slightly / much better. Stored and reported is
the *score* about the methods: -10 = method A much better ... +10 = method B much better.
``bgm_jax.study.blinding.unblind`` turns one into the other.
"""

from __future__ import annotations

LEVELS: tuple[int, ...] = (-10, -5, 0, 5, 10)

# choice on the page -> button label (what the rater reads)
CHOICE_LABELS: dict[int, str] = {
    -10: "Left is much better",
    -5: "Left is slightly better",
    0: "Similar",
    5: "Right is slightly better",
    10: "Right is much better",
}


def score_label(score: int, method_a: str, method_b: str) -> str:
    """What a score means for the methods, e.g. ``"BGM much better"`` for -10."""
    if score == 0:
        return "similar"
    method = method_a if score < 0 else method_b
    return f"{method} {'much' if abs(score) == 10 else 'slightly'} better"


def is_level(value: object) -> bool:
    """True for one of the five levels as a plain int (``True`` and ``5.0`` are not levels)."""
    return type(value) is int and value in LEVELS
