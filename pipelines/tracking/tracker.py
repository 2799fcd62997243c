"""GAGAvatar tracking from plain images: portrait -> source record, video frames -> driver.

Per crop (``analyse_crop``): FAN face box -> EMICA crops (224² for DECA/EMOCA, 320² for SCRFD -> 112² ArcFace crop
for MICA) -> EMICA codes; VGGHead on the 512 crop -> head box + its FLAME fit; 98 landmarks in the VGGHead box -> 70.
Then the camera/eye fit (:mod:`.optimize`).  Records are :class:`pipelines.gagavatar.TrackedDriver` objects, so
``write_tracked`` saves them in the official layout and ``read_tracked`` reads them back.

Differences from the reference, on purpose (each one is reported):

- Video frames where no head / face is found are KEPT: their crop box and then their codes are interpolated from
  the neighbouring frames, instead of being dropped and the rest renumbered.
- Dropping every other frame above 50 fps is an option (``drop_high_fps``, default off), not silent.
- Matting is pluggable (``TrackerModels.matting``); the reference always composites the crop onto black.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..face_detection import mediapipe_hint
from ..gagavatar.driver import TrackedDriver
from .crops import (CROP_SIZE, DECA_SCALE, DECA_SIZE, SCRFD_SCALE, SCRFD_SIZE, arcface_crop, face_crop,
                    head_crop, landmark_box, landmark_input)
from .landmarks import wflw98_to_70
from .optimize import STEPS, fit_camera_and_eyes, vgghead_targets
from .temporal import (BOX_ALPHA, CAMERA_ALPHA, EYE_ALPHA, ema, fill_camera_gaps, fill_gaps, select_frames,
                       smooth_cameras)

Progress = Callable[[int, int], None] | None
FILES = {"vgghead": "vgg_heads_l.trcd", "landmarks": "lmks_2d.pt", "emica": "EMICA-CVT_flame2020_notexture.pt",
         "scrfd": "ins_scrfd_10g_bnkps.onnx", "matting": "stylematte_synth.pt"}
FLAME_FILE, S3FD_FILE, FAN_FILE = "FLAME_with_eye.pt", "s3fd-619a316812.pth", "2DFAN4-11f355bf06.pth.tar"
MATTING_CHOICES = ("stylematte", "selfie", "none")
FACE_BOX_CHOICES = ("fan", "blazeface")


@dataclass
class TrackerModels:
    """Everything the tracker runs.  ``face_box(image uint8 [H,W,3]) -> box | None`` places EMICA's crops;
    ``matting(crop [3,512,512] float 0..255) -> alpha [512,512] in 0..1`` or None (no matting)."""

    vgghead: Callable
    landmarks: torch.nn.Module
    emica: torch.nn.Module
    scrfd: object
    face_box: Callable
    flame: torch.nn.Module
    matting: Callable | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    matting_method: str = "none"


@dataclass
class CropObservation:
    """What the networks saw in one 512 crop (torch tensors on the model device)."""

    emica: dict
    vgg: object
    landmarks70: torch.Tensor
    bbox: np.ndarray


# ----------------------------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------------------------

def _missing_text(path: Path, models_dir: Path) -> str:
    from ...weights import missing_message_for_file

    return f"{path}: {missing_message_for_file(path.name, models_dir=models_dir)}"


def _selfie_matting() -> Callable:
    try:
        from mediapipe.python.solutions.selfie_segmentation import SelfieSegmentation
    except ImportError as error:
        raise ImportError(mediapipe_hint("matting='selfie'")) from error
    segmenter = SelfieSegmentation(model_selection=0)

    def alpha(crop: torch.Tensor) -> torch.Tensor:
        pixels = np.ascontiguousarray(crop.detach().clamp(0, 255).round().byte().permute(1, 2, 0).cpu().numpy())
        return torch.from_numpy(segmenter.process(pixels).segmentation_mask.copy()).to(crop.device)

    return alpha


def load_tracker(folder, device: str | torch.device = "cpu", flame=None, face_detection_folder=None,
                 matting: str = "stylematte", face_box: str = "fan") -> TrackerModels:
    """Load the tracker's released files from ``folder`` (``models/gagavatar/track/``).

    ``flame``: a loaded FLAME layer or a path (default ``<models>/flame/FLAME_with_eye.pt``; it must carry the
    70-point ``*_with_eye`` landmark embedding).  ``face_detection_folder``: where ``s3fd-619a316812.pth`` and
    ``2DFAN4-11f355bf06.pth.tar`` are (default ``<models>/face_detection``).  ``matting``: 'stylematte' (the
    released ``stylematte_synth.pt``, as the reference), 'selfie' (MediaPipe selfie segmentation from the mediapipe
    wheel: a fallback without that file, NOT the reference's matte) or 'none'.  ``face_box``: 'fan' (S3FD + 2DFAN4,
    the reference's) or 'blazeface' (MediaPipe, needs neither file; not the reference's box).  Raises FileNotFoundError naming every missing file.
    """
    from ...models.flame import FlameLayer, load_flame
    from ...models.track_emica import load_emica
    from ...models.track_landmarks import load_landmark_net
    from ...models.track_scrfd import load_scrfd
    from ...models.track_vgghead import load_vgghead

    if matting not in MATTING_CHOICES:
        raise ValueError(f"matting must be one of {MATTING_CHOICES}, got {matting!r}")
    folder = Path(folder)
    models_dir = folder.parent.parent
    fd_folder = Path(face_detection_folder) if face_detection_folder else models_dir / "face_detection"
    paths = {name: folder / file for name, file in FILES.items() if name != "matting" or matting == "stylematte"}
    if face_box not in FACE_BOX_CHOICES:
        raise ValueError(f"face_box must be one of {FACE_BOX_CHOICES}, got {face_box!r}")
    if face_box == "fan":
        paths["s3fd"], paths["fan"] = fd_folder / S3FD_FILE, fd_folder / FAN_FILE
    if not isinstance(flame, FlameLayer):
        paths["flame"] = Path(flame) if flame is not None else models_dir / "flame" / FLAME_FILE
    missing = [_missing_text(path, models_dir) for path in paths.values() if not path.is_file()]
    if missing:
        raise FileNotFoundError("GAGAvatar tracker files are missing:\n- " + "\n- ".join(missing))
    device = torch.device(device)
    flame_layer = flame if isinstance(flame, FlameLayer) else load_flame(paths["flame"], scale=5.0)
    if flame_layer.scale != 5.0:
        raise ValueError(f"flame: the tracker needs the FLAME layer at scale 5 (GAGAvatar's), got {flame_layer.scale}")
    if not flame_layer.has_landmarks:
        raise ValueError("flame: this FLAME file has no 70-point '*_with_eye' landmark embedding, which tracking "
                         "needs; use the FLAME_with_eye.pt distributed with the tracker")
    matte = None
    if matting == "stylematte":
        from ...models.track_matting import load_stylematte

        matte = load_stylematte(paths["matting"], device)
    elif matting == "selfie":
        matte = _selfie_matting()
    from .face_box import BlazeFaceBox, FanFaceBox

    finder = FanFaceBox(paths["s3fd"], paths["fan"], str(device)) if face_box == "fan" else BlazeFaceBox()

    return TrackerModels(
        vgghead=load_vgghead(paths["vgghead"], device), landmarks=load_landmark_net(paths["landmarks"], device),
        emica=load_emica(paths["emica"], device), scrfd=load_scrfd(paths["scrfd"], str(device)),
        face_box=finder, flame=flame_layer.to(device),
        matting=matte, device=device, matting_method=matting)


# ----------------------------------------------------------------------------------------------------------------
# Per crop
# ----------------------------------------------------------------------------------------------------------------

def _as_image_tensor(image, name: str) -> torch.Tensor:
    """uint8 [H,W,3] (or float 0..1) RGB -> [3,H,W] float 0..255."""
    array = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"{name}: expected one RGB image [H,W,3], got shape {array.shape}")
    if array.dtype == np.uint8:
        pixels = array.astype(np.float32)
    else:
        pixels = np.clip(array.astype(np.float32), 0.0, 1.0) * 255.0
    if min(array.shape[:2]) < 16:
        raise ValueError(f"{name}: image of {array.shape[1]}x{array.shape[0]} pixels is too small to track")
    return torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1)


def matte_crop(crop: torch.Tensor, models: TrackerModels) -> torch.Tensor:
    """Composite the crop onto black with the matting network (unchanged without one)."""
    if models.matting is None:
        return crop
    alpha = models.matting(crop).to(crop.dtype).clamp(0, 1)
    return (crop * alpha[None]).clamp(0, 255)


def analyse_crop(crop: torch.Tensor, models: TrackerModels) -> tuple[CropObservation | None, str]:
    """Run the networks on one 512 crop [3,512,512] float 0..255; (None, reason) when a detector finds nothing."""
    crop = crop.to(models.device)
    pixels = crop.clamp(0, 255).round().byte().permute(1, 2, 0).cpu().numpy()
    face = models.face_box(pixels)
    if face is None:
        return None, "no face found by S3FD/FAN"
    scrfd_crop = face_crop(crop, face, SCRFD_SIZE, SCRFD_SCALE)
    found = models.scrfd.largest_face(scrfd_crop)
    if found is None:
        return None, "no face found by SCRFD"
    arcface = arcface_crop(scrfd_crop, found[1])
    if arcface is None:
        return None, "degenerate SCRFD keypoints"
    arcface = arcface.to(models.device)
    deca = (face_crop(crop, face, DECA_SIZE, DECA_SCALE) / 255.0).to(models.device)
    vgg = models.vgghead(crop)
    if vgg is None:
        return None, "no head found by VGGHead"
    box = landmark_box(vgg.bbox)
    with torch.no_grad():
        net_input, scale = landmark_input(crop, box)
        points98 = models.landmarks(net_input.to(models.device))[0] / scale
        points98 = points98 + torch.as_tensor(box[:2], dtype=points98.dtype, device=points98.device)
        codes = models.emica(deca[None], arcface[None])
    codes = {name: value[0] for name, value in codes.items()}
    bbox = np.clip(vgg.bbox / CROP_SIZE, 0.0, 1.0).astype(np.float32)
    return CropObservation(emica=codes, vgg=vgg, landmarks70=wflw98_to_70(points98), bbox=bbox), ""


# ----------------------------------------------------------------------------------------------------------------
# Fitting a batch of observations
# ----------------------------------------------------------------------------------------------------------------

def _stack(observations: list[CropObservation], get) -> torch.Tensor:
    return torch.stack([torch.as_tensor(get(o)).float() for o in observations])


def fit_observations(observations: list[CropObservation], models: TrackerModels, shapecode: torch.Tensor | None = None,
                     steps: int = STEPS, progress: Progress = None) -> dict:
    """Camera/eye fit of a batch; ``shapecode`` [300] replaces EMICA's per-frame shape (shared identity).

    Returns numpy arrays shapecode, expcode, posecode, eyecode, transform_matrix, bbox [B,...] and landmarks_used."""
    flame, device = models.flame, models.device
    shapes = _stack(observations, lambda o: o.emica["shapecode"]).to(device)
    if shapecode is not None:
        shapes = shapecode.float().to(device)[None].expand(len(observations), -1)
    expression = _stack(observations, lambda o: o.emica["expcode"]).to(device)
    jaw = _stack(observations, lambda o: o.emica["jawpose"]).to(device)
    global_pose = _stack(observations, lambda o: o.emica["globalpose"]).to(device)
    vgg = {name: _stack(observations, lambda o, n=name: getattr(o.vgg, n)).to(device)
           for name in ("shapecode", "expcode", "jaw", "rotation_6d", "translation", "scale")}
    padding = _stack(observations, lambda o: o.vgg.padding).to(device)
    letterbox = torch.tensor([o.vgg.letterbox_scale for o in observations], device=device)
    landmarks = _stack(observations, lambda o: o.landmarks70).to(device)
    with torch.no_grad():
        targets = vgghead_targets(flame, vgg["shapecode"], vgg["expcode"], vgg["jaw"], vgg["rotation_6d"],
                                  vgg["translation"], vgg["scale"], padding, letterbox, landmarks)
    fit = fit_camera_and_eyes(flame, shapes, expression, jaw, global_pose, targets, steps=steps, progress=progress)
    return {"shapecode": shapes.cpu().numpy(), "expcode": expression.cpu().numpy(),
            "posecode": torch.cat([torch.zeros_like(jaw), jaw], 1).cpu().numpy(),
            "eyecode": fit.eyecode.cpu().numpy(), "transform_matrix": fit.transform.cpu().numpy(),
            "bbox": np.stack([o.bbox for o in observations]), "landmarks_used": fit.landmarks_used.cpu().numpy()}


def _as_uint8(crop: torch.Tensor) -> np.ndarray:
    return crop.detach().clamp(0, 255).round().byte().permute(1, 2, 0).cpu().numpy()


# ----------------------------------------------------------------------------------------------------------------
# Image
# ----------------------------------------------------------------------------------------------------------------

def track_image(image, models: TrackerModels, key: str = "image", steps: int = STEPS,
                progress: Progress = None) -> TrackedDriver:
    """Track one portrait: image uint8 [H,W,3] RGB (or float 0..1) -> a one-frame :class:`TrackedDriver`
    (``image_set=True``: saved as ``optim.pkl``) holding the matted 512 crop and its FLAME/camera codes.

    Raises ValueError naming the step when no head or face is found.
    """
    pixels = _as_image_tensor(image, "image")
    head = models.vgghead(pixels)
    if head is None:
        raise ValueError("image: VGGHead found no head; use a photo where the whole head is visible")
    crop = matte_crop(head_crop(pixels.to(models.device), head.bbox), models)
    observation, reason = analyse_crop(crop, models)
    if observation is None:
        raise ValueError(f"image: {reason} in the head crop; use a clearer, more frontal portrait")
    codes = fit_observations([observation], models, steps=steps, progress=progress)
    codes.pop("landmarks_used")
    return TrackedDriver(keys=[key], images=_as_uint8(crop)[None], image_set=True, **codes)


# ----------------------------------------------------------------------------------------------------------------
# Video
# ----------------------------------------------------------------------------------------------------------------

class _Steps:
    """Maps the phases (detect, analyse, fit) onto one ``progress(done, total)`` counter."""

    def __init__(self, progress: Progress, frames: int):
        self.progress, self.total = progress, 3 * frames

    def report(self, done: float) -> None:
        if self.progress is not None:
            self.progress(min(int(done), self.total), self.total)


def _frame_at(frames, index: int, name: str = "frames") -> torch.Tensor:
    return _as_image_tensor(frames[index], f"{name}[{index}]")


def track_video(frames, fps: float, models: TrackerModels, progress: Progress = None, name: str = "video",
                drop_high_fps: bool = False, share_id: bool = True, steps: int = STEPS,
                batch_size: int = 64) -> tuple[TrackedDriver, dict]:
    """Track a driving video: frames [T,H,W,3] uint8 RGB (or float 0..1) -> (TrackedDriver, report).

    Head boxes are EMA-smoothed (0.03) and cropped (sqrt(w·h)·1.65 -> 512), crops matted; the identity shape is the
    mean MICA shape of the video (``share_id``); the fit runs in batches of ``batch_size`` frames; cameras and eyes
    are EMA-smoothed (0.6 / 0.7).  Frames without a head or face get their box / codes interpolated from their
    neighbours.  ``drop_high_fps`` keeps every other frame of a video above 50 fps (the reference always does).
    Keys are ``f'{name}_{i}'`` for i = 0..T'-1 (output frames).  The report: frames_in/out, fps_in/out,
    dropped_input_frames (input indices), no_head_frames (output indices whose crop box was interpolated),
    interpolated_frames ({output index: reason} whose codes were interpolated), landmarks_ignored_frames (fitted to
    the VGGHead vertices only), shared_identity, matting, seconds.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if len(frames) == 0:
        raise ValueError("frames: the video has no frames")
    started = time.perf_counter()
    kept, fps_out = select_frames(len(frames), fps, drop_high_fps)
    counter = _Steps(progress, len(kept))

    boxes = np.zeros((len(kept), 4))
    head_found = np.zeros(len(kept), dtype=bool)
    for i, index in enumerate(kept):
        head = models.vgghead(_frame_at(frames, int(index)))
        if head is not None:
            boxes[i], head_found[i] = head.bbox, True
        counter.report(i + 1)
    if not head_found.any():
        raise ValueError("frames: VGGHead found no head in any frame of the video")
    boxes = ema(fill_gaps(boxes, head_found), BOX_ALPHA)

    crops = np.zeros((len(kept), CROP_SIZE, CROP_SIZE, 3), np.uint8)
    observations: dict[int, CropObservation] = {}
    failures: dict[int, str] = {}
    for i, index in enumerate(kept):
        crop = matte_crop(head_crop(_frame_at(frames, int(index)).to(models.device), boxes[i]), models)
        crops[i] = _as_uint8(crop)
        observation, reason = analyse_crop(crop, models)
        if observation is None:
            failures[i] = reason
        else:
            observations[i] = observation
        counter.report(len(kept) + i + 1)
    if not observations:
        raise ValueError(f"frames: no frame could be tracked ({next(iter(failures.values()))} in every crop)")

    order = sorted(observations)
    shared = None
    if share_id:
        shared = torch.stack([observations[i].emica["shapecode"].float() for i in order]).mean(0)
    parts = []
    for start in range(0, len(order), batch_size):
        batch = [observations[i] for i in order[start:start + batch_size]]
        base = 2 * len(kept) + start * len(kept) / len(order)
        share = len(batch) * len(kept) / len(order)
        parts.append(fit_observations(batch, models, shared, steps,
                                      lambda done, total, b=base, s=share: counter.report(b + s * done / total)))
    fitted = {name_: np.concatenate([p[name_] for p in parts]) for name_ in parts[0]}

    valid = np.zeros(len(kept), dtype=bool)
    valid[order] = True
    codes = {}
    for field_name in ("shapecode", "expcode", "posecode", "eyecode", "bbox"):
        full = np.zeros((len(kept), *fitted[field_name].shape[1:]))
        full[valid] = fitted[field_name]
        codes[field_name] = fill_gaps(full, valid)
    cameras = np.zeros((len(kept), 3, 4))
    cameras[valid] = fitted["transform_matrix"]
    codes["transform_matrix"] = smooth_cameras(fill_camera_gaps(cameras, valid), CAMERA_ALPHA)
    codes["eyecode"] = ema(codes["eyecode"], EYE_ALPHA)
    counter.report(counter.total)

    driver = TrackedDriver(keys=[f"{name}_{i}" for i in range(len(kept))], images=crops, fps=fps_out,
                           **{k: v.astype(np.float32) for k, v in codes.items()})
    dropped = sorted(set(range(len(frames))) - set(int(i) for i in kept))
    report = {
        "frames_in": len(frames), "frames_out": len(kept), "fps_in": float(fps), "fps_out": fps_out,
        "dropped_input_frames": dropped,
        "no_head_frames": [int(i) for i in np.flatnonzero(~head_found)],
        "interpolated_frames": {int(i): reason for i, reason in sorted(failures.items())},
        "landmarks_ignored_frames": [int(order[j]) for j in np.flatnonzero(~fitted["landmarks_used"])],
        "shared_identity": bool(share_id), "matting": models.matting_method,
        "seconds": round(time.perf_counter() - started, 2),
    }
    return driver, report
