"""DDIM quality presets: steps per preset. The release samples with ddim25 ("balanced")."""

QUALITY_PRESETS = {"fast": 10, "balanced": 25, "high": 50, "ultra": 100}


def steps_for(quality: str, custom_steps: int | None = None) -> int:
    """Steps for a preset name, or ``custom_steps`` when ``quality == "custom"``."""
    if quality == "custom":
        if not custom_steps or custom_steps < 1:
            raise ValueError(f"quality 'custom' needs custom_steps >= 1, got {custom_steps}")
        return int(custom_steps)
    if quality not in QUALITY_PRESETS:
        raise ValueError(f"quality must be one of {[*QUALITY_PRESETS, 'custom']}, got {quality!r}")
    return QUALITY_PRESETS[quality]
