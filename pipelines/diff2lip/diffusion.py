"""Diff2Lip's diffusion: linear 1000-step schedule, ``ddimN`` respacing and the DDIM sampler.

The arithmetic follows guided-diffusion step by step (float64 tables, coefficients cast to float32 before use), which
reproduces the reference run bit for bit on CPU.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

NUM_TRAIN_TIMESTEPS = 1000


def linear_betas(num_timesteps: int = NUM_TRAIN_TIMESTEPS) -> np.ndarray:
    """guided-diffusion's linear schedule (1e-4 .. 0.02 for 1000 steps), float64."""
    scale = 1000 / num_timesteps
    return np.linspace(scale * 0.0001, scale * 0.02, num_timesteps, dtype=np.float64)


def ddim_timesteps(steps: int, num_timesteps: int = NUM_TRAIN_TIMESTEPS) -> list[int]:
    """Timesteps kept by ``ddim<steps>``: ``range(0, T, s)`` for the smallest stride s giving exactly ``steps``.

    Same rule as the reference, which additionally rejects steps = 1 (its stride search stops below T).
    """
    for stride in range(1, num_timesteps + 1):
        if len(range(0, num_timesteps, stride)) == steps:
            return list(range(0, num_timesteps, stride))
    possible = sorted({len(range(0, num_timesteps, stride)) for stride in range(1, num_timesteps + 1)})
    below = max((p for p in possible if p < steps), default=None)
    above = min((p for p in possible if p > steps), default=None)
    raise ValueError(f"steps={steps} cannot be made with an integer stride over {num_timesteps} timesteps (the "
                     f"reference's ddimN rule); nearest possible step counts: {below} and {above}")


@dataclass(frozen=True)
class DDIMSchedule:
    """Respaced process: ``timesteps[i]`` is the original timestep the network sees at respaced index i."""

    timesteps: np.ndarray
    alphas_cumprod: np.ndarray
    alphas_cumprod_prev: np.ndarray

    @property
    def sqrt_recip_alphas_cumprod(self) -> np.ndarray:
        return np.sqrt(1.0 / self.alphas_cumprod)

    @property
    def sqrt_recipm1_alphas_cumprod(self) -> np.ndarray:
        return np.sqrt(1.0 / self.alphas_cumprod - 1)


def ddim_schedule(steps: int, num_timesteps: int = NUM_TRAIN_TIMESTEPS) -> DDIMSchedule:
    """Respace the linear schedule as ``SpacedDiffusion`` does: new betas from the kept alphas_cumprod, then the
    cumulative product again (which is not bit-identical to picking the base values)."""
    kept = ddim_timesteps(steps, num_timesteps)
    base = np.cumprod(1.0 - linear_betas(num_timesteps))
    betas, last = [], 1.0
    for t in kept:
        betas.append(1 - base[t] / last)
        last = base[t]
    alphas_cumprod = np.cumprod(1.0 - np.array(betas))
    return DDIMSchedule(timesteps=np.array(kept, dtype=np.int64), alphas_cumprod=alphas_cumprod,
                        alphas_cumprod_prev=np.append(1.0, alphas_cumprod[:-1]))


def lower_half_mask(n: int, height: int, width: int, device=None) -> torch.Tensor:
    """[n,1,H,W] float mask, 1 on rows ``int(H*0.5)``.. (the generated lower half)."""
    mask = torch.zeros(n, 1, height, width, device=device)
    mask[:, :, int(height * (1 - 0.5)):] = 1
    return mask


def composite_lower_half(sample: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """What the reference pastes: generated lower half, input upper half (the sampler never masks x)."""
    mask = lower_half_mask(*sample.shape[:1], *sample.shape[2:], device=sample.device)
    return sample * mask + (1 - mask) * target


def composite_with_mask(sample: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Generated pixels where ``mask`` [N,1,H,W] is 1, input pixels where it is 0 (the sampling mask's composite)."""
    return sample * mask + (1 - mask) * target


def seeded_noise(seed: int, size: int) -> torch.Tensor:
    """One [1,3,size,size] draw, equal to ``torch.manual_seed(seed); torch.randn(...)`` without touching the global
    RNG; the reference reuses it as x_T and as the masked-half noise of every frame."""
    generator = torch.Generator().manual_seed(int(seed))
    return torch.randn((1, 3, size, size), generator=generator)


def _f32(value: float, device) -> torch.Tensor:
    return torch.tensor(value, dtype=torch.float64).float().to(device)


@torch.no_grad()
def ddim_sample(model, target: torch.Tensor, reference: torch.Tensor, mels: torch.Tensor, noise: torch.Tensor,
                steps: int, clip_denoised: bool = True, eta: float = 0.0,
                progress: Callable[[int, int], None] | None = None,
                step_hook: Callable[[dict], None] | None = None,
                generator: torch.Generator | None = None, x_init: torch.Tensor | None = None,
                skip_steps: int = 0, sample_mask: torch.Tensor | None = None) -> torch.Tensor:
    """DDIM sampling of the lower half of ``target`` faces; returns the final sample [N,3,H,W] before compositing.

    target, reference: [N,3,H,W] in [-1,1]; mels: [N,80,16] (tensors or arrays); noise: [N or 1,3,H,W], used both
    as x_T and as the masked half of the conditioning image.  The audio conditioning is computed once, not at every step.
    ``progress(done, steps)`` runs after each step; ``step_hook`` receives a dict (index, timestep, model_out,
    pred_xstart, x) after each step.  ``generator`` drives the extra noise of eta > 0 (drawn on the CPU).
    ``skip_steps`` > 0 starts later in the schedule from ``x_init`` (an x at the noise level
    :func:`start_alpha_bar` gives, e.g. a guess noised SDEdit-style); the conditioning noise stays ``noise``.
    ``sample_mask`` [N,1,H,W] (1 = generate) replaces the release's lower-half mask (not in the reference; the
    released model was trained with the lower half only).
    """
    device = next(model.parameters()).device
    target, reference, mels, noise = (torch.as_tensor(t).to(device=device, dtype=torch.float32)
                                      for t in (target, reference, mels, noise))
    n, _, height, width = target.shape
    if noise.shape[0] not in (1, n) or tuple(noise.shape[1:]) != tuple(target.shape[1:]):
        raise ValueError(f"noise must be [1 or {n},3,{height},{width}], got {list(noise.shape)}")
    noise = noise.expand(n, -1, -1, -1)
    if sample_mask is None:
        mask = lower_half_mask(n, height, width, device=device)
    else:
        mask = torch.as_tensor(sample_mask).to(device=device, dtype=torch.float32)
        if tuple(mask.shape) != (n, 1, height, width):
            raise ValueError(f"sample_mask must be [{n},1,{height},{width}], got {list(mask.shape)}")
    cond_img = target * (1 - mask) + mask * noise
    audio_style = model.encode_audio(mels)

    schedule = ddim_schedule(steps)
    recip, recipm1 = schedule.sqrt_recip_alphas_cumprod, schedule.sqrt_recipm1_alphas_cumprod
    if not 0 <= skip_steps < steps or (skip_steps > 0) != (x_init is not None):
        raise ValueError(f"skip_steps must be in [0, {steps}) and given together with x_init, got {skip_steps}")
    x = noise if x_init is None else torch.as_tensor(x_init).to(device=device, dtype=torch.float32).expand(n, -1, -1, -1)
    for done, i in enumerate(reversed(range(steps - skip_steps)), start=1):
        timesteps = torch.full((n,), int(schedule.timesteps[i]), dtype=torch.long, device=device)
        model_out = model(x, timesteps, cond_img=cond_img, mask=mask, ref_img=reference, audio_style=audio_style)
        eps = model_out[:, :3]  # channels 3-5 (learned variance) only matter for DDPM
        pred_xstart = _f32(recip[i], device) * x - _f32(recipm1[i], device) * eps
        if clip_denoised:
            pred_xstart = pred_xstart.clamp(-1, 1)
        eps = (_f32(recip[i], device) * x - pred_xstart) / _f32(recipm1[i], device)
        alpha_bar = _f32(schedule.alphas_cumprod[i], device)
        alpha_bar_prev = _f32(schedule.alphas_cumprod_prev[i], device)
        sigma = eta * torch.sqrt((1 - alpha_bar_prev) / (1 - alpha_bar)) * torch.sqrt(1 - alpha_bar / alpha_bar_prev)
        x = pred_xstart * torch.sqrt(alpha_bar_prev) + torch.sqrt(1 - alpha_bar_prev - sigma ** 2) * eps
        if eta > 0 and i > 0:
            x = x + sigma * torch.randn(x.shape, generator=generator).to(device)
        if step_hook is not None:
            step_hook({"index": i, "timestep": int(schedule.timesteps[i]), "model_out": model_out,
                       "pred_xstart": pred_xstart, "x": x})
        if progress is not None:
            progress(done, steps - skip_steps)
    return x


def start_alpha_bar(steps: int, skip_steps: int) -> float:
    """ᾱ of the state DDIM with ``steps`` steps expects after skipping its first ``skip_steps`` steps."""
    return float(ddim_schedule(steps).alphas_cumprod[steps - 1 - skip_steps])
