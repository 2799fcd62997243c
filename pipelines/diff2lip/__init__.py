"""Diff2Lip lip sync without ComfyUI: mel audio, face-box smoothing and crops, DDIM sampling, the clip orchestrator."""
from .audio import mel_windows, melspectrogram, window_start
from .crops import crop_faces, crops_to_model, model_to_crops, paste_face, paste_faces, smooth_boxes
from .diffusion import (composite_lower_half, ddim_sample, ddim_schedule, ddim_timesteps, linear_betas,
                        lower_half_mask, seeded_noise, start_alpha_bar)
from .face_crops import FaceCrops, crop_clip, paste_crops, sample_crops
from .flow_start import flow_guided_start, flow_warped_initial_guess, mix_initial_noise
from .lipsync import (generate_faces, lipsync, locate_faces, paste_generated, progress_estimate,
                      sample_in_batches)

__all__ = ["FaceCrops", "composite_lower_half", "crop_clip", "crop_faces", "crops_to_model", "ddim_sample",
           "ddim_schedule", "ddim_timesteps", "flow_guided_start", "flow_warped_initial_guess", "generate_faces",
           "linear_betas", "lipsync", "locate_faces", "lower_half_mask", "mel_windows", "melspectrogram",
           "mix_initial_noise", "model_to_crops", "paste_crops", "paste_face", "paste_faces", "paste_generated",
           "progress_estimate", "sample_crops", "sample_in_batches", "seeded_noise", "smooth_boxes",
           "start_alpha_bar", "window_start"]
