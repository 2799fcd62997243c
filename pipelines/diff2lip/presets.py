"""DDIM quality presets: steps per preset. The release samples with ddim25 ("balanced")."""

QUALITY_PRESETS = {"fast": 10, "balanced": 25, "high": 50, "ultra": 100}

# How a generated crop goes back into its frame -> ``lipsync(paste_whole_box=...)``.  The release resizes the whole
# 128x128 result (upper half included, so it is resampled twice) into the box, in 8 bits; "lower half" writes only the
# generated rows and leaves the rest of the frame bit-identical.
RELEASE_PASTE = "whole box (release)"
PASTE_MODES = {RELEASE_PASTE: True, "lower half": False}
RELEASE_PADS = (0, 0, 0, 0)  # (top, bottom, left, right) of the release's generate.py; Wav2Lip's are (0, 10, 0, 0)


def steps_for(quality: str, custom_steps: int | None = None) -> int:
    """Steps for a preset name, or ``custom_steps`` when ``quality == "custom"``."""
    if quality == "custom":
        if not custom_steps or custom_steps < 1:
            raise ValueError(f"quality 'custom' needs custom_steps >= 1, got {custom_steps}")
        return int(custom_steps)
    if quality not in QUALITY_PRESETS:
        raise ValueError(f"quality must be one of {[*QUALITY_PRESETS, 'custom']}, got {quality!r}")
    return QUALITY_PRESETS[quality]
