"""elmjax: pretrain OpenELM-family language models with JAX.

Public entry points::

    params = elmjax.init_params(config, rng)
    logits = elmjax.forward(config, params, tokens)   # float32 [batch, length, vocab]
    out = elmjax.generate(config, params, prompt_ids, max_new_tokens)  # .tokens [batch, new]
"""

from elmjax.inference.generation import generate
from elmjax.model.openelm import forward, init_params

__all__ = ["forward", "generate", "init_params"]
__version__ = "0.1.0"
