"""FLAME head model as GAGAvatar uses it, plus a chumpy-free converter for FLAME 2020 files.

The layer reads the ``FLAME_with_eye.pt`` layout: ``{'flame_model': {f, v_template, shapedirs, posedirs,
J_regressor, kintree_table, weights}, 'lmk_embeddings': {...}}``.  ``shapedirs`` holds 300 identity components
followed by 100 expression components.  Joints: 0 global, 1 neck (always 0), 2 jaw, 3/4 eyeballs.

Pose convention of tracked drivers: ``posecode = [global axis-angle (always 0 in tracked data), jaw
axis-angle]``; the head pose lives in the camera ``transform_matrix``, not in FLAME.  ``eye_pose`` holds the two
eyeball axis-angles.  Output vertices are multiplied by ``scale`` (5 in GAGAvatar).
"""
from __future__ import annotations

import codecs
import os
import copyreg
import io
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .state_dict_file import load_content

N_SHAPE = 300
N_EXPRESSION = 100
FLAME_KEYS = ("f", "v_template", "shapedirs", "posedirs", "J_regressor", "kintree_table", "weights")
LANDMARK_KEYS = (
    "static_lmk_faces_idx", "static_lmk_bary_coords",
    "dynamic_lmk_faces_idx", "dynamic_lmk_bary_coords",
    "full_lmk_faces_idx_with_eye", "full_lmk_bary_coords_with_eye",
)


# ----------------------------------------------------------------------------------------------------------------
# Legacy pickles (Python-2 FLAME files with chumpy / scipy.sparse objects, tracked-driver pickles)
# ----------------------------------------------------------------------------------------------------------------

class PickledObjectStandIn:
    """Receives the state of a pickled object whose class is not importable here (chumpy ``Ch``, scipy sparse)."""

    pickled_class = ""
    state: dict = {}


    def __setstate__(self, state):
        self.state = state if isinstance(state, dict) else {"state": state}


def _stand_in_class(module: str, name: str) -> type:
    return type(name, (PickledObjectStandIn,), {"pickled_class": f"{module}.{name}"})


_NUMPY_GLOBALS = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,
    ("copy_reg", "_reconstructor"): copyreg._reconstructor,
    ("copyreg", "_reconstructor"): copyreg._reconstructor,
    ("__builtin__", "object"): object,
    ("builtins", "object"): object,
    ("__builtin__", "set"): set,
    ("builtins", "set"): set,
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickles numpy data only; chumpy and scipy.sparse objects become :class:`PickledObjectStandIn`.

    Anything else (arbitrary code in an untrusted pickle) is refused.
    """

    def find_class(self, module, name):
        if (module, name) in _NUMPY_GLOBALS:
            return _NUMPY_GLOBALS[(module, name)]
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name in ("_reconstruct", "scalar"):
            return getattr(np._core.multiarray, name)
        if module in ("numpy.core.numeric", "numpy._core.numeric") and name == "_frombuffer":  # protocol-5 arrays
            return np._core.numeric._frombuffer
        if module == "numpy" and name == "dtype":
            return np.dtype
        if module.split(".")[0] == "chumpy" or module.startswith("scipy.sparse"):
            return _stand_in_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load '{module}.{name}' from a pickle (only numpy data is allowed)")


MAX_PICKLE_BYTES = 1 << 30  # FLAME 2020's generic_model.pkl is ~50 MB; a 100k-frame smoothed.pkl ~200 MB
MAX_PICKLE_DEPTH = 32
MAX_DENSE_ELEMENTS = 50_000_000  # a sparse matrix is made dense; FLAME's is 5 x 5023  # real files nest a few levels (dict -> record -> array / chumpy state)


def _expanded_item_limit(size: int) -> int:
    """How many containers and elements a pickle of ``size`` bytes may expand to.  Each pickled item costs at least
    one byte, so only shared references (the memo) can exceed the file size: that is how an 11 KB pickle of nested
    lists expands to gigabytes when converted to arrays."""
    return 1_000_000 + 8 * size


def check_pickle_structure(obj, origin: str, size: int) -> None:
    """``ValueError`` when ``obj`` nests deeper than :data:`MAX_PICKLE_DEPTH` or expands (shared references counted
    each time they are reached, as array conversion would) to more items than a file of ``size`` bytes can hold.
    Walked iteratively and stopped at the limit, so the check itself stays cheap."""
    limit = _expanded_item_limit(size)
    count = 0
    stack = [(obj, 0)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_PICKLE_DEPTH:
            raise ValueError(f"pickle {origin} nests deeper than {MAX_PICKLE_DEPTH} levels: not a FLAME / tracked file")
        if isinstance(value, Mapping):
            children = [*value.keys(), *value.values()]
        elif isinstance(value, (list, tuple, set, frozenset)):
            children = list(value)
        elif isinstance(value, PickledObjectStandIn):
            children = [value.state]
        elif isinstance(value, np.ndarray) and value.dtype == object:
            children = list(value.flat)
        else:
            children = ()
        count += 1 + len(children)
        if count > limit:
            raise ValueError(f"pickle {origin} expands to more than {limit:,} items through shared references "
                             f"(a {size:,}-byte file); refusing to expand it")
        stack.extend((child, depth + 1) for child in children)


def load_legacy_pickle(source, max_bytes: int = MAX_PICKLE_BYTES) -> object:
    """Load a pickle restricted to numpy data (Python-2 pickles included; ``encoding='latin1'``).

    ``source``: path, bytes or binary file.  chumpy and scipy.sparse objects come back as
    :class:`PickledObjectStandIn`; use :func:`to_numpy` on them.  Files over ``max_bytes`` and content nested too
    deep or expanding beyond the file's size (see :func:`check_pickle_structure`) are refused before anything is
    converted.  Raises ``ValueError`` for other content.
    """
    origin = str(source) if isinstance(source, (str, Path)) else "<data>"
    if isinstance(source, (bytes, bytearray)):
        stream, size = io.BytesIO(source), len(source)
    elif isinstance(source, (str, Path)):
        if not Path(source).is_file():
            raise ValueError(f"pickle {origin} is not a regular file")
        size = Path(source).stat().st_size
        if size > max_bytes:
            raise ValueError(f"pickle {origin} is {size / 2**20:.0f} MiB, more than the {max_bytes / 2**20:.0f} MiB "
                             "a FLAME or tracked file can be; is it the right file?")
        stream = open(source, "rb")
    else:
        stream, size = source, max_bytes
    try:
        loaded = _RestrictedUnpickler(stream, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, AttributeError, TypeError, ValueError, IndexError, KeyError,
            MemoryError, RecursionError) as error:
        raise ValueError(f"cannot read pickle {origin}: {type(error).__name__}: {error}") from None
    finally:
        if stream is not source:
            stream.close()
    check_pickle_structure(loaded, origin, size)
    return loaded


def load_npy(path, max_bytes: int = MAX_PICKLE_BYTES) -> object:
    """A ``.npy`` file without ``allow_pickle=True``: the header is parsed, plain arrays are read as data, and an
    object array (``np.save`` of a dict, as DECA's landmark_embedding.npy) goes through the restricted unpickler."""
    path = Path(path)
    size = path.stat().st_size
    if size > max_bytes:
        raise ValueError(f"{path} is {size / 2**20:.0f} MiB, more than the {max_bytes / 2**20:.0f} MiB allowed")
    with open(path, "rb") as handle:
        try:
            version = np.lib.format.read_magic(handle)
            header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                      else np.lib.format.read_array_header_2_0)(handle)
        except (ValueError, OSError, SyntaxError) as error:
            raise ValueError(f"{path} is not a .npy file: {error}") from None
        shape, _fortran, dtype = header
        if not dtype.hasobject:
            handle.seek(0)
            return np.load(handle, allow_pickle=False)
        # np.save pickles object arrays right after the header: read that pickle with the numpy-only unpickler.
        payload = handle.read()
    loaded = load_legacy_pickle(payload)
    if not isinstance(loaded, np.ndarray) or loaded.shape != tuple(shape):
        raise ValueError(f"{path}: its object payload is not the {tuple(shape)} array its header declares")
    return loaded


def _sparse_to_dense(obj: PickledObjectStandIn) -> np.ndarray:
    from scipy import sparse

    state = obj.state
    shape = tuple(state.get("_shape", state.get("shape", ())))
    fmt = obj.pickled_class.rsplit(".", 1)[-1][:3]
    if len(shape) != 2 or not all(isinstance(n, (int, np.integer)) and 0 <= n for n in shape) \
            or int(shape[0]) * int(shape[1]) > MAX_DENSE_ELEMENTS:
        raise ValueError(f"sparse matrix of shape {shape} in the FLAME pickle: expected a 2-D matrix of at most "
                         f"{MAX_DENSE_ELEMENTS:,} elements (FLAME's J_regressor is 5 x 5023)")
    if fmt == "csc":
        matrix = sparse.csc_matrix((state["data"], state["indices"], state["indptr"]), shape=shape)
    elif fmt == "csr":
        matrix = sparse.csr_matrix((state["data"], state["indices"], state["indptr"]), shape=shape)
    elif fmt == "coo":
        matrix = sparse.coo_matrix((state["data"], (state["row"], state["col"])), shape=shape)
    else:
        raise ValueError(f"unsupported sparse matrix class {obj.pickled_class} in the FLAME pickle")
    return matrix.toarray()


def to_numpy(value) -> np.ndarray:
    """Plain ndarray from an ndarray, a torch tensor, a chumpy stand-in (its ``x``) or a sparse stand-in (dense)."""
    if isinstance(value, PickledObjectStandIn):
        if value.pickled_class.startswith("scipy.sparse"):
            return _sparse_to_dense(value)
        if "x" in value.state:
            return to_numpy(value.state["x"])
        raise ValueError(f"cannot turn the pickled {value.pickled_class} into an array: it has no 'x' value "
                         "(only terminal chumpy Ch objects are supported)")
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


# ----------------------------------------------------------------------------------------------------------------
# Converter: generic_model.pkl (+ landmark embeddings) -> FLAME_with_eye.pt layout
# ----------------------------------------------------------------------------------------------------------------

def _landmark_entries(content, origin: str) -> dict:
    """Map one landmark file's content onto the ``lmk_embeddings`` key names."""
    if isinstance(content, np.ndarray) and content.dtype == object and content.shape == ():
        content = content.item()  # np.save of a dict
    if not isinstance(content, Mapping):
        raise ValueError(f"landmark file {origin}: expected a dict of arrays, got {type(content).__name__}")
    if "lmk_embeddings" in content:  # an existing FLAME_with_eye.pt
        content = content["lmk_embeddings"]
    entries = {k: to_numpy(content[k]) for k in LANDMARK_KEYS if k in content}
    if "lmk_face_idx" in content and "lmk_b_coords" in content:  # FLAME's flame_{static,dynamic}_embedding files
        faces, bary = to_numpy(content["lmk_face_idx"]), to_numpy(content["lmk_b_coords"])
        kind = "static" if faces.ndim == 1 else "dynamic"
        entries[f"{kind}_lmk_faces_idx"], entries[f"{kind}_lmk_bary_coords"] = faces, bary
    if not entries:
        raise ValueError(f"landmark file {origin} holds none of the known landmark keys "
                         f"({', '.join(LANDMARK_KEYS)}, or lmk_face_idx/lmk_b_coords)")
    return entries


def _read_landmark_file(item) -> dict:
    if isinstance(item, Mapping):
        return _landmark_entries(item, "<dict>")
    path = Path(item)
    if not path.is_file():
        raise ValueError(f"landmark file {path} not found")
    if path.suffix == ".npy":
        return _landmark_entries(load_npy(path), str(path))
    if path.suffix in (".pt", ".pth"):
        return _landmark_entries(load_content(path, "landmark embedding"), str(path))
    return _landmark_entries(load_legacy_pickle(path), str(path))


def _typed_landmarks(entries: dict) -> dict:
    return {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.int64 if "idx" in k else np.float32))
            for k, v in entries.items()}


def flame_dict_from_pkl(generic_model_pkl, landmark_files: Sequence = ()) -> dict:
    """Read FLAME 2020 ``generic_model.pkl`` without chumpy and return the ``FLAME_with_eye.pt`` dict.

    ``landmark_files``: paths (or dicts) of landmark embeddings to merge into ``lmk_embeddings``: DECA's
    ``landmark_embedding.npy``, FLAME's ``flame_static_embedding.pkl`` / ``flame_dynamic_embedding.npy``, or an
    existing ``FLAME_with_eye.pt`` (the only source of GAGAvatar's 70-point ``*_with_eye`` embedding, which the
    tracker needs and animation does not).
    """
    raw = load_legacy_pickle(generic_model_pkl)
    if not isinstance(raw, Mapping):
        raise ValueError(f"{generic_model_pkl}: expected the FLAME generic_model.pkl dict, got {type(raw).__name__}")
    missing = [k for k in FLAME_KEYS if k not in raw]
    if missing:
        raise ValueError(f"{generic_model_pkl} is not a FLAME model file: missing {missing}")
    arrays = {k: to_numpy(raw[k]) for k in FLAME_KEYS}
    flame_model = {}
    for key, value in arrays.items():
        # kintree_table and f are uint32 in the official file; the layer needs signed indices.
        dtype = np.int64 if key in ("f", "kintree_table") else np.float32
        flame_model[key] = torch.from_numpy(np.ascontiguousarray(value.astype(dtype)))
    flame_model["kintree_table"][0, 0] = -1  # the root's parent is stored wrapped around (2**32 - 1)
    if isinstance(landmark_files, (str, Path, Mapping)):
        landmark_files = [landmark_files]
    landmarks = {}
    for item in landmark_files:
        landmarks.update(_read_landmark_file(item))
    return {"flame_model": flame_model, "lmk_embeddings": _typed_landmarks(landmarks)}


def convert_flame_pkl(generic_model_pkl, out_path, landmark_files: Sequence = ()) -> dict:
    """Convert FLAME 2020 ``generic_model.pkl`` (+ optional landmark files) into a ``FLAME_with_eye.pt`` file.

    The pickle's chumpy arrays are read through stand-in classes (chumpy is not needed) and the scipy-sparse
    ``J_regressor`` is made dense.  Returns the written dict.  See :func:`flame_dict_from_pkl`.
    """
    flame = flame_dict_from_pkl(generic_model_pkl, landmark_files)
    _validate_flame_dict(flame, str(generic_model_pkl))
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.{os.getpid()}.partial")
    try:
        torch.save(flame, tmp)
        tmp.replace(out_path)  # atomic: loaders never see a half-written file
    finally:
        tmp.unlink(missing_ok=True)
    return flame


# ----------------------------------------------------------------------------------------------------------------
# The layer
# ----------------------------------------------------------------------------------------------------------------

def _validate_flame_dict(flame, origin: str) -> None:
    if not isinstance(flame, Mapping) or "flame_model" not in flame:
        raise ValueError(f"{origin}: expected the FLAME_with_eye.pt layout (a dict with 'flame_model' and "
                         "'lmk_embeddings'); convert FLAME 2020's generic_model.pkl with: talkinghead.py flame convert "
                         "generic_model.pkl")
    model = flame["flame_model"]
    missing = [k for k in FLAME_KEYS if k not in model]
    if missing:
        raise ValueError(f"{origin}: 'flame_model' lacks {missing}")
    num_vertices = model["v_template"].shape[0]
    if tuple(model["shapedirs"].shape[:2]) != (num_vertices, 3) or model["shapedirs"].shape[2] < N_SHAPE + N_EXPRESSION:
        raise ValueError(f"{origin}: shapedirs must be [V,3,>=400] (300 shape + 100 expression components), got "
                         f"{tuple(model['shapedirs'].shape)}")
    if tuple(model["J_regressor"].shape) != (model["weights"].shape[1], num_vertices):
        raise ValueError(f"{origin}: J_regressor must be dense [J,V], got {tuple(model['J_regressor'].shape)}")
    if model["weights"].shape[1] != 5 or tuple(model["kintree_table"].shape) != (2, 5):
        raise ValueError(f"{origin}: expected the 5-joint FLAME skeleton (global, neck, jaw, 2 eyes)")


def _float_tensor(value) -> torch.Tensor:
    return torch.as_tensor(to_numpy(value), dtype=torch.float32).clone()


def rodrigues(axis_angle: torch.Tensor) -> torch.Tensor:
    """Rotation matrices [N,3,3] from axis-angles [N,3], SMPL-style (angle = |v + 1e-8|)."""
    angle = torch.norm(axis_angle + 1e-8, dim=1, keepdim=True)
    axis = axis_angle / angle
    cos, sin = torch.cos(angle)[:, :, None], torch.sin(angle)[:, :, None]
    x, y, z = axis.unbind(1)
    zero = torch.zeros_like(x)
    skew = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=1).view(-1, 3, 3)
    eye = torch.eye(3, dtype=axis_angle.dtype, device=axis_angle.device)
    return eye + sin * skew + (1 - cos) * torch.bmm(skew, skew)


def _rigid_transforms(rotations: torch.Tensor, joints: torch.Tensor, parents: list[int]) -> torch.Tensor:
    """Skinning transforms [B,J,4,4] that map rest-pose points to posed points (joint chain from ``parents``)."""
    relative = joints.clone()
    relative[:, 1:] = joints[:, 1:] - joints[:, parents[1:]]
    local = torch.zeros(*rotations.shape[:2], 4, 4, dtype=rotations.dtype, device=rotations.device)
    local[..., :3, :3] = rotations
    local[..., :3, 3] = relative
    local[..., 3, 3] = 1
    chain = [local[:, 0]]
    for joint in range(1, len(parents)):
        chain.append(chain[parents[joint]] @ local[:, joint])
    world = torch.stack(chain, dim=1)
    rest_offset = (world[..., :3, :3] @ joints[..., None])[..., 0]
    world = world.clone()
    world[..., :3, 3] = world[..., :3, 3] - rest_offset
    return world


def _batched(name: str, value, width: int, dtype, device) -> torch.Tensor:
    tensor = torch.as_tensor(value, dtype=dtype, device=device)
    if tensor.ndim == 1:
        tensor = tensor[None]
    if tensor.ndim != 2 or tensor.shape[1] > width:
        raise ValueError(f"FLAME input '{name}' must be [B,{width}] (fewer components are zero-padded), got "
                         f"{tuple(tensor.shape)}")
    if tensor.shape[1] < width:
        tensor = torch.nn.functional.pad(tensor, (0, width - tensor.shape[1]))
    return tensor


class FlameLayer(nn.Module):
    """FLAME linear blend skinning: ``flame(shape, expression, pose, eye_pose) -> vertices [B,V,3] × scale``.

    Exposed buffers: ``v_template`` [V,3] (unscaled), ``faces`` [F,3] long, ``shapedirs`` [V,3,400] with
    ``shape_basis`` = [..., :300] and ``expression_basis`` = [..., 300:400] views (unscaled, per unit coefficient).
    """

    def __init__(self, flame: Mapping, scale: float = 5.0):
        super().__init__()
        model = flame["flame_model"]
        self.scale = float(scale)
        self.register_buffer("v_template", _float_tensor(model["v_template"]))
        self.register_buffer("faces", torch.as_tensor(to_numpy(model["f"]).astype(np.int64)))
        self.register_buffer("shapedirs", _float_tensor(model["shapedirs"])[:, :, : N_SHAPE + N_EXPRESSION].contiguous())
        posedirs = _float_tensor(model["posedirs"])
        self.register_buffer("posedirs", posedirs.reshape(-1, posedirs.shape[-1]).T.contiguous())  # [36, V*3]
        self.register_buffer("J_regressor", _float_tensor(model["J_regressor"]))
        self.register_buffer("lbs_weights", _float_tensor(model["weights"]))
        parents = to_numpy(model["kintree_table"]).astype(np.int64)[0].tolist()
        self.parents = [-1] + parents[1:]  # the root's entry is garbage in the official file
        landmarks = flame.get("lmk_embeddings") or {}
        has_landmarks = "full_lmk_faces_idx_with_eye" in landmarks and "full_lmk_bary_coords_with_eye" in landmarks
        if has_landmarks:
            faces_idx = torch.as_tensor(to_numpy(landmarks["full_lmk_faces_idx_with_eye"]).astype(np.int64)).reshape(-1)
            self.register_buffer("landmark_faces_idx", faces_idx)
            bary = _float_tensor(landmarks["full_lmk_bary_coords_with_eye"]).reshape(-1, 3)
            self.register_buffer("landmark_bary_coords", bary)
        else:
            self.landmark_faces_idx = self.landmark_bary_coords = None

    @property
    def num_vertices(self) -> int:
        return self.v_template.shape[0]

    @property
    def shape_basis(self) -> torch.Tensor:
        return self.shapedirs[:, :, :N_SHAPE]

    @property
    def expression_basis(self) -> torch.Tensor:
        return self.shapedirs[:, :, N_SHAPE:]

    @property
    def has_landmarks(self) -> bool:
        return self.landmark_faces_idx is not None

    def landmarks(self, vertices: torch.Tensor) -> torch.Tensor:
        """The 70 landmarks (68 + 2 eye centres; barycentric, no dynamic contour) of ``vertices`` [B,V,3]."""
        if not self.has_landmarks:
            raise ValueError("this FLAME file has no 70-point '*_with_eye' landmark embedding; load the official "
                             "FLAME_with_eye.pt or name it as a landmark file in: talkinghead.py flame convert "
                             "generic_model.pkl FLAME_with_eye.pt")
        corners = vertices[:, self.faces[self.landmark_faces_idx]]  # [B,L,3 corners,3 xyz]
        return torch.einsum("blcx,lc->blx", corners, self.landmark_bary_coords.to(vertices.dtype))

    def forward(self, shape, expression, pose, eye_pose, return_landmarks: bool = False):
        """Posed vertices [B,V,3] × ``scale`` (and the 70 landmarks at the same scale if ``return_landmarks``).

        shape [B,300], expression [B,100], pose [B,6] = [global, jaw] axis-angles, eye_pose [B,6]; a batch of 1 is
        broadcast against the others (e.g. one source identity for many driver frames).
        """
        dtype, device = self.v_template.dtype, self.v_template.device
        inputs = [_batched("shape", shape, N_SHAPE, dtype, device),
                  _batched("expression", expression, N_EXPRESSION, dtype, device),
                  _batched("pose", pose, 6, dtype, device), _batched("eye_pose", eye_pose, 6, dtype, device)]
        batch = max(t.shape[0] for t in inputs)
        if any(t.shape[0] not in (1, batch) for t in inputs):
            raise ValueError(f"FLAME inputs have incompatible batch sizes {[t.shape[0] for t in inputs]}")
        shape, expression, pose, eye_pose = (t.expand(batch, -1) for t in inputs)
        betas = torch.cat([shape, expression], dim=1)
        neck = torch.zeros(batch, 3, dtype=dtype, device=device)
        full_pose = torch.cat([pose[:, :3], neck, pose[:, 3:], eye_pose], dim=1)

        v_shaped = self.v_template + torch.einsum("bl,vkl->bvk", betas, self.shapedirs)
        joints = torch.einsum("jv,bvk->bjk", self.J_regressor, v_shaped)
        rotations = rodrigues(full_pose.reshape(-1, 3)).view(batch, -1, 3, 3)
        eye3 = torch.eye(3, dtype=dtype, device=device)
        pose_feature = (rotations[:, 1:] - eye3).reshape(batch, -1)
        v_posed = v_shaped + (pose_feature @ self.posedirs).view(batch, -1, 3)
        transforms = _rigid_transforms(rotations, joints, self.parents)
        per_vertex = torch.einsum("vj,bjxy->bvxy", self.lbs_weights, transforms)
        vertices = (per_vertex[..., :3, :3] @ v_posed[..., None])[..., 0] + per_vertex[..., :3, 3]
        vertices = vertices * self.scale
        if return_landmarks:
            return vertices, self.landmarks(vertices)
        return vertices


def load_flame(source, scale: float = 5.0) -> FlameLayer:
    """Build the FLAME layer from ``FLAME_with_eye.pt`` (path or loaded dict) or an official ``generic_model.pkl``.

    ``scale``: vertex multiplier (GAGAvatar uses 5).  Raises ``ValueError`` naming what is wrong with the file.
    """
    if isinstance(source, Mapping):
        flame, origin = source, "FLAME dict"
    else:
        path = Path(source)
        if not path.is_file():
            raise ValueError(f"FLAME file {path} not found: supply FLAME_with_eye.pt or FLAME 2020 generic_model.pkl "
                             "(registration at flame.is.tue.mpg.de)")
        origin = str(path)
        if path.suffix == ".pkl":
            flame = flame_dict_from_pkl(path)
        else:
            flame = load_content(path, "FLAME")  # the pack's checked reader: clear errors, no code runs
    _validate_flame_dict(flame, origin)
    return FlameLayer(flame, scale=scale)
