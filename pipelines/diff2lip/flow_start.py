"""Flow start (not in the reference): begin DDIM part-way from the previous frame's result carried along by the head
motion, for temporal coherence.  A hook inside the sampler, used by :func:`.lipsync.lipsync` when ``flow_start`` > 0.
"""
from __future__ import annotations

import numpy as np
import torch

from ..frames import to_float
from ..optical_flow import flow_with_validity, warp_with_flow
from .diffusion import seeded_noise, start_alpha_bar


def flow_warped_initial_guess(previous_generated_crop, previous_input_crop, current_input_crop, method: str = "dis",
                              fb_tolerance_px: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Warp the previous frame's generated crop into the current frame as an initial guess for its sampling.

    The flow is taken between the INPUT crops (known before sampling: head motion); the generated mouth rides along.
    Returns ``(guess [H,W,3] in 0..1, valid [H,W] bool)``; ``valid`` is False where the flow is inconsistent.

    How it feeds Diff2Lip's sampler (see :func:`mix_initial_noise`): map the guess to −1..1 (``2·guess − 1``) and
    resize it to the 128² crop; pick a start step t0 of the respaced DDIM schedule and build
    ``x_t0 = sqrt(ᾱ_t0)·guess + sqrt(1 − ᾱ_t0)·noise`` (SDEdit), using the seed-7 noise and plain noise where
    ``valid`` is False; then run DDIM from t0 instead of from 960. Starting at 960 is pointless: the linear schedule
    has ᾱ_960 ≈ 1e-4, so the guess would carry 1 % of x_T. Only the masked lower half is sampled, and the cond_img
    noise must stay the unchanged seed-7 tensor (the model saw exactly that noise, the same tensor as x_T,
    in training; other noise is a distribution shift).
    A later t0 gives more temporal coherence and less freedom for the new mouth shape.
    """
    previous_generated = np.asarray(previous_generated_crop, dtype=np.float32)
    current_input = np.asarray(current_input_crop, dtype=np.float32)
    previous_input = np.asarray(previous_input_crop, dtype=np.float32)
    if not (previous_generated.shape == previous_input.shape == current_input.shape) or current_input.ndim != 3:
        raise ValueError("crops: previous_generated_crop, previous_input_crop and current_input_crop must all be "
                         f"[H,W,3] of one size, got {previous_generated.shape}, {previous_input.shape}, "
                         f"{current_input.shape}")
    forward, valid = flow_with_validity(current_input, previous_input, method, fb_tolerance_px)
    return warp_with_flow(previous_generated, forward), valid


def mix_initial_noise(guess, noise, alpha_bar: float, valid=None):
    """SDEdit start ``sqrt(ᾱ)·guess + sqrt(1 − ᾱ)·noise``, guess in −1..1; plain ``noise`` where ``valid`` is 0.

    With ᾱ = ᾱ_t0 of the DDIM step the sampler starts from, the mix has the marginal of the guess noised to t0
    (linear schedule: ᾱ_600 ≈ 0.026, ᾱ_400 ≈ 0.19, ᾱ_200 ≈ 0.66). Works on numpy arrays or torch tensors of one
    shape; ``valid`` is a 0/1 float array broadcastable to them.
    """
    alpha_bar = float(alpha_bar)
    if not 0.0 <= alpha_bar <= 1.0:
        raise ValueError(f"alpha_bar: expected a value in 0..1, got {alpha_bar}")
    mixed = alpha_bar ** 0.5 * guess + (1.0 - alpha_bar) ** 0.5 * noise
    if valid is None:
        return mixed
    return valid * mixed + (1 - valid) * noise


def flow_guided_start(model, previous_generated: np.ndarray, previous_input: np.ndarray, current_input: np.ndarray,
                      steps: int, skip_steps: int, seed: int) -> torch.Tensor:
    """x to start DDIM from after ``skip_steps`` steps: the previous frame's generated crop warped by the optical flow
    between the previous and current input crops, noised to that step's level (SDEdit); seed noise where the flow
    is unreliable.  All crops [S,S,3] in the frames' dtype."""
    crops = (to_float(crop) for crop in (previous_generated, previous_input, current_input))
    guess, valid = flow_warped_initial_guess(*crops)
    guess = torch.from_numpy(guess * 2 - 1).permute(2, 0, 1)[None]
    valid = torch.from_numpy(valid.astype(np.float32))[None, None]
    return mix_initial_noise(guess, seeded_noise(seed, model.image_size), start_alpha_bar(steps, skip_steps), valid)
