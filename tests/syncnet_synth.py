"""The SyncNet fixture weights regenerated from their recipe (tests/fixtures/syncnet), for tests and benchmarks."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

RECIPE = Path(__file__).resolve().parent / "fixtures" / "syncnet" / "syncnet_seeded_weights_recipe.json"


def load_recipe() -> dict:
    return json.loads(RECIPE.read_text())


def seeded_state(recipe: dict | None = None) -> dict:
    """The fixture weights regenerated from their recipe (one standard-normal draw per float tensor, in order)."""
    recipe = recipe or load_recipe()
    rng = np.random.default_rng(1234)
    state = {}
    for entry in recipe["tensors"]:
        key, shape, rule = entry["key"], entry["shape"], entry["rule"]
        z = rng.standard_normal(shape)
        if key.endswith("running_mean"):
            value = (0.1 * z).astype(np.float32)
        elif key.endswith("running_var"):
            value = (1 + 0.1 * np.abs(z)).astype(np.float32)
        elif rule.startswith("bn gamma"):
            module = key.rsplit(".", 1)[0]
            value = (1 + 0.05 * z).astype(np.float32) * np.float32(recipe["bn_gamma_scale"][module])
        elif key.endswith("bias"):
            value = (0.01 * z).astype(np.float32)
        else:
            value = (0.05 * z).astype(np.float32)
        state[key] = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))
    return state
