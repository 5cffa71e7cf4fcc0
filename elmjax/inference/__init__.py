"""KV-cache decoding, sampling and ``generate``."""

from elmjax.inference.cache import KVCache, cast_params, extend, init_cache
from elmjax.inference.generation import Generation, generate, pad_prompts
from elmjax.inference.sampling import Sampler, filtered_logits, sample

__all__ = ["Generation", "KVCache", "Sampler", "cast_params", "extend", "filtered_logits",
           "generate", "init_cache", "pad_prompts", "sample"]
