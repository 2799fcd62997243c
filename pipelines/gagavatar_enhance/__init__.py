"""Inference-time GAGAvatar enhancements: driver smoothing, detail enhancement, region-aware expression transfer,
gaze correction.  Framework-free (numpy/OpenCV; torch only through the FLAME layer)."""
