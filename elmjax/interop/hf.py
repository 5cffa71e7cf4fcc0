"""Apple's Hugging Face OpenELM layout in and out (``config.json`` + safetensors).

Tensor names follow apple/OpenELM-*: ``transformer.token_embeddings.weight``,
``transformer.layers.{i}.attn.qkv_proj.weight`` ... ``transformer.norm.weight``;
linear weights are stored PyTorch-style ``[out, in]`` (elmjax kernels are ``[in, out]``).
Tensors are read lazily with safetensors; nothing is ever unpickled.
"""

from __future__ import annotations

import json
import os
from typing import Callable, Iterator

import ml_collections
import numpy as np
from etils import epath

from elmjax import storage
from elmjax.config import model_config, validate_model
from elmjax.model.schedule import ffn_multipliers, layer_schedule, make_divisible

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
INDEX_NAME = "model.safetensors.index.json"
DEFAULT_MAX_SHARD_BYTES = 5 * 1024 ** 3


class CheckpointFormatError(ValueError):
    """A Hugging Face checkpoint does not match the layout or its own config."""


# --------------------------------------------------------------------------- names


def tensor_map(m) -> Iterator[tuple[str, tuple, bool]]:
    """Yields (HF tensor name, path in the elmjax param tree, transposed?) for a model config."""
    yield "transformer.token_embeddings.weight", ("token_embeddings",), False
    for i in range(m.num_layers):
        p, layer = f"transformer.layers.{i}.", f"layers_{i}"
        yield p + "attn.qkv_proj.weight", (layer, "attn", "qkv_proj", "kernel"), True
        if m.normalize_qk:
            yield p + "attn.q_norm.weight", (layer, "attn", "q_norm", "scale"), False
            yield p + "attn.k_norm.weight", (layer, "attn", "k_norm", "scale"), False
        yield p + "attn.out_proj.weight", (layer, "attn", "out_proj", "kernel"), True
        yield p + "attn_norm.weight", (layer, "attn_norm", "scale"), False
        yield p + "ffn.proj_1.weight", (layer, "ffn", "proj_1", "kernel"), True
        yield p + "ffn.proj_2.weight", (layer, "ffn", "proj_2", "kernel"), True
        yield p + "ffn_norm.weight", (layer, "ffn_norm", "scale"), False
    yield "transformer.norm.weight", ("norm", "scale"), False


def expected_shapes(m) -> dict[str, tuple[int, ...]]:
    """HF tensor name -> shape (PyTorch ``[out, in]`` for linear weights)."""
    d, hd = m.model_dim, m.head_dim
    shapes = {"transformer.token_embeddings.weight": (m.vocab_size, d),
              "transformer.norm.weight": (d,)}
    for i, s in enumerate(layer_schedule(m)):
        p = f"transformer.layers.{i}."
        shapes[p + "attn.qkv_proj.weight"] = ((s.num_query_heads + 2 * s.num_kv_heads) * hd, d)
        if m.normalize_qk:
            shapes[p + "attn.q_norm.weight"] = (hd,)
            shapes[p + "attn.k_norm.weight"] = (hd,)
        shapes[p + "attn.out_proj.weight"] = (d, s.num_query_heads * hd)
        shapes[p + "attn_norm.weight"] = (d,)
        shapes[p + "ffn.proj_1.weight"] = (2 * s.ffn_dim, d)
        shapes[p + "ffn.proj_2.weight"] = (d, s.ffn_dim)
        shapes[p + "ffn_norm.weight"] = (d,)
    return shapes


# --------------------------------------------------------------------------- config


def config_from_hf(hf: dict) -> ml_collections.ConfigDict:
    """The elmjax ``model`` section for an apple/OpenELM ``config.json`` dict."""
    try:
        n = int(hf["num_transformer_layers"])
        d = int(hf["model_dim"])
        divisor = int(hf["ffn_dim_divisor"])
        ffn_m = [float(x) for x in hf["ffn_multipliers"]]
        if len(ffn_m) == 2 and n != 2:
            ffn_m = [round(float(x), 2) for x in np.linspace(ffn_m[0], ffn_m[1], n)]
        m = model_config(
            num_layers=n,
            model_dim=d,
            head_dim=int(hf["head_dim"]),
            num_gqa_groups=int(hf.get("num_gqa_groups", 1)),
            qkv_multipliers=tuple(float(x) for x in hf.get("qkv_multipliers", (0.5, 1.0))),
            ffn_multipliers=tuple(ffn_m),
            ffn_dim_divisor=divisor,
            vocab_size=int(hf["vocab_size"]),
            rope_freq_constant=float(hf.get("rope_freq_constant", 10000)),
            rope_max_length=int(hf.get("rope_max_length", 4096)),
            max_context_length=int(hf.get("max_context_length", 2048)),
            normalize_qk=bool(hf.get("normalize_qk_projections", True)),
        )
        m.num_query_heads = tuple(int(x) for x in hf["num_query_heads"])
        m.num_kv_heads = tuple(int(x) for x in hf["num_kv_heads"])
        m.ffn_dims = tuple(make_divisible(x * d, divisor) for x in ffn_m)
        if hf.get("initializer_range") is not None:
            m.init_std = float(hf["initializer_range"])
    except KeyError as e:
        raise CheckpointFormatError(f"{CONFIG_NAME} lacks the key {e.args[0]!r}") from None
    for key, want in (("ffn_with_glu", True), ("share_input_output_layers", True),
                      ("normalization_layer_name", "rms_norm"), ("activation_fn_name", "swish")):
        if key in hf and hf[key] != want:
            raise CheckpointFormatError(
                f"{CONFIG_NAME}: {key}={hf[key]!r} is not supported (elmjax implements {want!r})")
    validate_model(m, prefix=CONFIG_NAME)
    return m


def config_to_hf(m, dtype: str = "float32") -> dict:
    """An apple/OpenELM ``config.json`` dict for a ``model`` section."""
    sched = layer_schedule(m)
    ffn_m = ffn_multipliers(m)
    for i, (mult, s) in enumerate(zip(ffn_m, sched)):
        if make_divisible(mult * m.model_dim, m.ffn_dim_divisor) != s.ffn_dim:
            raise CheckpointFormatError(
                f"layer {i}: ffn_dim {s.ffn_dim} cannot be expressed as an OpenELM ffn multiplier "
                f"(model.ffn_multipliers gives {mult})")
    gqa = sched[0].num_query_heads // sched[0].num_kv_heads
    return {
        "activation_fn_name": "swish",
        "architectures": ["OpenELMForCausalLM"],
        "bos_token_id": 1,
        "eos_token_id": 2,
        "ffn_dim_divisor": m.ffn_dim_divisor,
        "ffn_multipliers": ffn_m,
        "ffn_with_glu": True,
        "head_dim": m.head_dim,
        "initializer_range": float(m.init_std) if m.init_std else 0.02,
        "max_context_length": m.max_context_length,
        "model_dim": m.model_dim,
        "model_type": "openelm",
        "normalization_layer_name": "rms_norm",
        "normalize_qk_projections": bool(m.normalize_qk),
        "num_gqa_groups": gqa,
        "num_kv_heads": [s.num_kv_heads for s in sched],
        "num_query_heads": [s.num_query_heads for s in sched],
        "num_transformer_layers": m.num_layers,
        "qkv_multipliers": [float(x) for x in m.qkv_multipliers][:2],
        "rope_freq_constant": int(m.rope_freq_constant),
        "rope_max_length": m.rope_max_length,
        "share_input_output_layers": True,
        "torch_dtype": dtype,
        "transformers_version": "4.39.3",
        "use_cache": True,
        "vocab_size": m.vocab_size,
    }


# --------------------------------------------------------------------------- load


def _safetensor_files(path: epath.Path) -> list[epath.Path]:
    index = path / INDEX_NAME
    if index.exists():
        weight_map = json.loads(index.read_text())["weight_map"]
        return [path / f for f in sorted(set(weight_map.values()))]
    single = path / WEIGHTS_NAME
    if single.exists():
        return [single]
    raise FileNotFoundError(f"{path}: neither {WEIGHTS_NAME} nor {INDEX_NAME} found")


def read_tensors(files: list, rename: Callable[[str], str] = lambda n: n) -> dict[str, Callable]:
    """Name -> zero-argument loader, over safetensors files (nothing read until called)."""
    from safetensors import SafetensorError, safe_open

    loaders = {}
    for f in files:
        local = storage.LocalCopies.get(f)  # safetensors maps a local file
        try:
            with safe_open(local, framework="numpy") as handle:
                names = list(handle.keys())
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointFormatError(f"{local}: not a readable safetensors file ({e})") from None

        for name in names:
            def load(local=local, name=name):
                try:
                    with safe_open(local, framework="numpy") as h:
                        return h.get_tensor(name)
                except (SafetensorError, OSError, ValueError) as e:
                    raise CheckpointFormatError(f"{local}: tensor {name!r} unreadable ({e})") from None
            loaders[rename(name)] = load
    return loaders


def params_from_tensors(m, loaders: dict[str, Callable], source: str) -> dict:
    """Builds the float32 elmjax parameter tree from HF-named tensor loaders, checking shapes."""
    shapes = expected_shapes(m)
    missing = [n for n in shapes if n not in loaders]
    if missing:
        raise CheckpointFormatError(f"{source}: missing tensor {missing[0]!r} "
                                    f"({len(missing)} missing in all)")
    extra = sorted(set(loaders) - set(shapes))
    if extra:
        raise CheckpointFormatError(f"{source}: unexpected tensor {extra[0]!r} "
                                    f"({len(extra)} unexpected in all)")
    params: dict = {}
    for name, path, transpose in tensor_map(m):
        x = loaders[name]()
        if tuple(x.shape) != shapes[name]:
            raise CheckpointFormatError(f"{source}: tensor {name!r} has shape {tuple(x.shape)}, "
                                        f"the config needs {shapes[name]}")
        x = np.asarray(x, dtype=np.float32)
        node = params
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = np.ascontiguousarray(x.T) if transpose else x
    return params


def load_hf(path) -> tuple[ml_collections.ConfigDict, dict]:
    """Reads an apple/OpenELM-style directory.

    Returns ``(config, params)``: a ConfigDict with the ``model`` section, and the float32
    numpy parameter tree that ``elmjax.forward`` takes.
    """
    path = epath.Path(path)
    cfg_file = path / CONFIG_NAME
    if not cfg_file.exists():
        raise FileNotFoundError(f"{path}: no {CONFIG_NAME}")
    try:
        hf_config = json.loads(cfg_file.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointFormatError(f"{cfg_file}: not valid JSON ({e})") from None
    if not isinstance(hf_config, dict):
        raise CheckpointFormatError(f"{cfg_file}: not a JSON object")
    m = config_from_hf(hf_config)
    params = params_from_tensors(m, read_tensors(_safetensor_files(path)), os.fspath(path))
    return ml_collections.ConfigDict({"model": m}), params


# --------------------------------------------------------------------------- save


def _write_whole(target: epath.Path, write: Callable[[str], None]) -> None:
    """Writes a file so that it appears whole or not at all, with the permissions the umask
    gives (safetensors itself creates files as 0600). ``write(path)`` writes the bytes;
    locally to a temporary name that is then renamed, on an object store directly."""
    final = os.fspath(target)
    if "://" in final:
        write(final)
        return
    tmp = f"{final}.partial"
    try:
        write(tmp)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        os.replace(tmp, final)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_hf(path, config, params, dtype: str = "float32",
            max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES) -> list[str]:
    """Writes ``config.json`` and safetensors (sharded with an index above ``max_shard_bytes``).

    ``dtype`` is ``float32`` or ``bfloat16``. Returns the written file names.
    """
    import ml_dtypes
    from safetensors.numpy import save

    if dtype not in ("float32", "bfloat16"):
        raise ValueError(f"dtype must be 'float32' or 'bfloat16', got {dtype!r}")
    np_dtype = np.float32 if dtype == "float32" else ml_dtypes.bfloat16
    m = config.model if "model" in config else config
    path = epath.Path(path)
    storage.makedirs(path)
    hf_config = config_to_hf(m, dtype)

    shards: list[dict] = [{}]
    size = 0
    for name, tree_path, transpose in tensor_map(m):
        x = params
        for key in tree_path:
            x = x[key]
        x = np.asarray(x, dtype=np.float32)
        x = np.ascontiguousarray((x.T if transpose else x).astype(np_dtype))
        if shards[-1] and size + x.nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = x
        size += x.nbytes

    meta = {"format": "pt"}
    if len(shards) == 1:
        names = [WEIGHTS_NAME]
    else:
        names = [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    for f, tensors in zip(names, shards):
        _write_whole(path / f,
                     lambda tmp, t=tensors: storage.write_bytes(tmp, save(t, metadata=meta)))
    if len(shards) > 1:
        index = {"metadata": {"total_size": sum(t.nbytes for s in shards for t in s.values())},
                 "weight_map": {n: f for f, s in zip(names, shards) for n in s}}
        text = json.dumps(index, indent=2, sort_keys=True)
        _write_whole(path / INDEX_NAME, lambda tmp: epath.Path(tmp).write_text(text))
    text = json.dumps(hf_config, indent=2, sort_keys=True)
    _write_whole(path / CONFIG_NAME, lambda tmp: epath.Path(tmp).write_text(text))  # last
    return [CONFIG_NAME, *names] + ([INDEX_NAME] if len(shards) > 1 else [])
