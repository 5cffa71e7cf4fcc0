"""Apple corenet's own PyTorch checkpoints (``.pt``): tensors named like the Hugging Face
layout without the ``transformer.`` prefix, usually with 32128 embedding rows.

Read with ``torch.load(weights_only=True)``, which refuses arbitrary pickled objects.
PyTorch is needed only here (``pip install 'elmjax[torch]'``).
"""

from __future__ import annotations

import os

import numpy as np

from elmjax.interop.hf import CheckpointFormatError, params_from_tensors


def load_corenet(path, model_cfg) -> dict:
    """The elmjax parameter tree from a corenet ``.pt`` file, checked against ``model_cfg``."""
    try:
        import torch
    except ImportError:
        raise ImportError("reading corenet .pt checkpoints needs PyTorch: "
                          "pip install 'elmjax[torch]' (CPU build torch==2.13.0)") from None
    try:
        obj = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds; all mean "not loadable"
        raise CheckpointFormatError(f"{path}: not a weights-only PyTorch checkpoint ({e})") from None
    for key in ("model_state_dict", "state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise CheckpointFormatError(f"{path}: expected a state dict, found {type(obj).__name__}")

    def hf_name(name: str) -> str:
        name = name.removeprefix("module.")
        return name if name.startswith("transformer.") else "transformer." + name

    loaders = {hf_name(k): (lambda t=v: t.detach().to(torch.float32).numpy().astype(np.float32))
               for k, v in obj.items()}
    return params_from_tensors(model_cfg, loaders, os.fspath(path))
