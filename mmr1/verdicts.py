"""The demos' pass bars, in one place: the demo's last line, ``mmr1 demo``'s exit code and the seed bench use them."""

from __future__ import annotations

VL_CHANCE = 0.25                 # four colours
VL_MIN_ACCURACY = 3 * VL_CHANCE  # held-out accuracy after GRPO
VL_MIN_FORMAT = 0.95
T2I_MIN_FIDELITY = 0.85
T2I_MAX_SHAPE_DROP = 0.05        # shape accuracy may fall at most 5 points below its pre-GRPO level


def vl_verdict(summary: dict) -> tuple[bool, str]:
    """(learned?, one line) for a vision-language demo summary."""
    acc, fmt = summary["accuracy_after"], summary["format_after"]
    ok = acc >= VL_MIN_ACCURACY and fmt >= VL_MIN_FORMAT
    bars = f"bars: accuracy >= {VL_MIN_ACCURACY:.2f} (3x chance), format >= {VL_MIN_FORMAT:.2f}"
    if ok:
        return True, f"verdict: LEARNED: held-out accuracy {summary['accuracy_before']:.3f} -> {acc:.3f}, format {fmt:.2f} ({bars})"
    return False, (f"verdict: DID NOT LEARN: held-out accuracy {summary['accuracy_before']:.3f} -> {acc:.3f}, "
                   f"format {fmt:.2f} ({bars})")


def t2i_verdict(summary: dict) -> tuple[bool, str]:
    """(learned?, one line) for a text-to-image demo summary: fidelity up, shapes kept."""
    fid, drop = summary["fidelity_after"], summary["shape_before"] - summary["shape_after"]
    ok = fid >= T2I_MIN_FIDELITY and drop <= T2I_MAX_SHAPE_DROP + 1e-9
    bars = f"bars: fidelity >= {T2I_MIN_FIDELITY:.2f}, shape accuracy at most {T2I_MAX_SHAPE_DROP * 100:.0f} points below before"
    figures = (f"colour fidelity {summary['fidelity_before']:.3f} -> {fid:.3f}, shape accuracy "
               f"{summary['shape_before']:.3f} -> {summary['shape_after']:.3f}")
    if ok:
        return True, f"verdict: LEARNED: {figures} ({bars})"
    reason = "fidelity below the bar" if fid < T2I_MIN_FIDELITY else "the shapes were lost (a reward hack)"
    return False, f"verdict: DID NOT LEARN ({reason}): {figures} ({bars})"


def vl_line(summary: dict) -> str:
    """The vision-language demo's line in ``mmr1 demo``'s summary."""
    return (f"vision-language: held-out accuracy {summary['accuracy_before']:.3f} -> {summary['accuracy_after']:.3f} "
            f"(format {summary['format_after']:.2f}); plot {summary['plot']}")


def t2i_line(summary: dict) -> str:
    """The text-to-image demo's line in ``mmr1 demo``'s summary."""
    return (f"text-to-image: held-out colour fidelity {summary['fidelity_before']:.3f} -> "
            f"{summary['fidelity_after']:.3f}, shape accuracy {summary['shape_before']:.3f} -> "
            f"{summary['shape_after']:.3f}; plot {summary['plot']}")
