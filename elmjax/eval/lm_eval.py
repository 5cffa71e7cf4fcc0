"""An lm-evaluation-harness model backed by elmjax: ``--model elmjax``.

Importing this module registers the model (lm-evaluation-harness 0.4.x has no
plugin discovery), so from Python::

    import elmjax.eval.lm_eval  # registers "elmjax"
    import lm_eval
    lm_eval.simple_evaluate(model="elmjax",
                            model_args="pretrained=DIR,tokenizer=tok.model,batch_size=16",
                            tasks=["arc_easy", "piqa"])

and from the shell (lm-eval's own command line, with the model registered)::

    elmjax-lm-eval run --model elmjax \\
        --model_args pretrained=DIR,tokenizer=tok.model --tasks arc_easy,piqa

(``python -m elmjax.eval.lm_eval run ...`` is the same.)

The paper's suites run through lm-eval itself with lm-eval's own task files over
local data (``elmjax.eval.lm_eval_tasks`` writes the configs)::

    out = simple_evaluate_suites("pretrained=DIR,tokenizer=tok.model", ["openllm"], "data/")
    out["suites"]["openllm"]["average"]

``pretrained`` is a Hugging Face OpenELM directory (``config.json`` +
safetensors) or an elmjax run directory (optional ``step=N``); ``tokenizer`` a
SentencePiece ``.model``; ``add_bos_token`` (default True, as OpenELM's
evaluation) prepends BOS to every context; ``max_length`` overrides the
model's context window. Requests are encoded and scored by the same code as
``elmjax eval`` (``elmjax.eval.encoding``, ``elmjax.eval.scoring``), so both give
identical numbers on the same documents.
"""

from __future__ import annotations

import os

import lm_eval.models  # noqa: F401  (fills lm-eval's own registry before we add to it)
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model

from elmjax.eval import encoding, harness, scoring


def _flag(value) -> bool:
    if isinstance(value, str):
        if value.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"expected True or False, got {value!r}")
        return value.lower() in ("true", "1")
    return bool(value)


def _is_hf_dir(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "config.json")) and any(
        f.endswith(".safetensors") or f.endswith(".safetensors.index.json")
        for f in os.listdir(path))


@register_model("elmjax")
class ElmjaxLM(LM):
    """lm-evaluation-harness ``LM`` over an elmjax model (see the module docstring for arguments)."""

    def __init__(self, pretrained: str, tokenizer: str, batch_size=8, add_bos_token=True,
                 max_length=None, step=None, **unused):
        super().__init__()
        if not os.path.isdir(pretrained):
            raise FileNotFoundError(f"elmjax: pretrained={pretrained} is not a directory")
        if _is_hf_dir(pretrained):
            self.config, self.params = harness.load_model(hf=pretrained)
        else:
            self.config, self.params = harness.load_model(
                workdir=pretrained, step=None if step is None else int(step))
        self.tok = encoding.open_tokenizer(tokenizer)
        self.add_bos = _flag(add_bos_token)
        if batch_size in (None, "auto"):
            batch_size = 8
        self.scorer = scoring.Scorer(self.config, self.params, int(batch_size),
                                     None if max_length is None else int(max_length))

    @property
    def max_length(self) -> int:
        return self.scorer.max_length

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        """``Instance.args == (context, continuation)`` -> ``(sum log p, is_greedy)`` per request."""
        pairs = [req.args for req in requests]
        return self.scorer.loglikelihood(
            encoding.encode_pairs(self.tok, pairs, add_bos=self.add_bos))

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        """``Instance.args == (text,)`` -> summed log-probability of every token, rolling windows.

        The first token is predicted from BOS (lm-eval's prefix token).
        """
        docs = encoding.encode(self.tok, [req.args[0] for req in requests])
        return self.scorer.loglikelihood_rolling(docs, self.tok.bos_id)

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        """``Instance.args == (context, gen_kwargs)`` -> the generated text, cut at ``until``.

        gen_kwargs: ``until`` (strings or one string), ``max_gen_toks`` (default 256),
        ``temperature`` (0 = greedy; ``do_sample=False`` forces greedy). Decoding
        stops at EOS as well.
        """
        import jax

        from elmjax.inference import generate

        out = []
        for req in requests:
            context, kwargs = req.args
            kwargs = dict(kwargs or {})
            until = kwargs.get("until") or []
            until = [until] if isinstance(until, str) else list(until)
            max_new = int(kwargs.get("max_gen_toks", 256))
            temperature = float(kwargs.get("temperature", 0.0))
            if not kwargs.get("do_sample", temperature > 0):
                temperature = 0.0
            ids = encoding.encode(self.tok, [context])[0]
            ids = ([self.tok.bos_id] if self.add_bos else []) + ids
            ids = ids[-max(1, self.max_length - max_new):]
            gen = generate(self.config, self.params, [ids], max_new,
                           key=jax.random.key(int(kwargs.get("seed", 0))),
                           temperature=temperature, stop_tokens=[self.tok.eos_id],
                           max_length=self.max_length)
            text = self.tok.decode([t for t in gen.to_lists()[0] if t != self.tok.eos_id])
            for stop in until:
                if stop and stop in text:
                    text = text.split(stop)[0]
            out.append(text)
        return out


def simple_evaluate_suites(model_args: str, names, data_dir: str, num_fewshot: int | None = None,
                           limit: int | None = None, config_dir: str | None = None,
                           **kwargs) -> dict:
    """``lm_eval.simple_evaluate`` with ``--model elmjax`` on suites, groups, tasks over local data.

    model_args: lm-eval's model argument string (``pretrained=DIR,tokenizer=tok.model``);
    names: as ``elmjax eval --tasks``; data_dir: as ``--data-dir``; limit: the first N
    documents of each task; config_dir: keep the generated task configs there
    (``elmjax.eval.lm_eval_tasks``; a temporary directory otherwise); kwargs go to
    ``simple_evaluate``. Returns lm-eval's output with ``"suites"`` added (the
    paper's averages, as ``elmjax eval`` reports them).
    """
    import tempfile

    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    from elmjax.eval import lm_eval_tasks, suites

    names = ["zero_shot" if n == "all" else n for n in names]
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = config_dir or tmp
        top = lm_eval_tasks.write_task_configs(data_dir, out_dir, names, num_fewshot, limit)
        out = simple_evaluate(model="elmjax", model_args=model_args, tasks=top,
                              task_manager=TaskManager(include_path=out_dir,
                                                       include_defaults=False), **kwargs)
    results = lm_eval_tasks.results_from_lm_eval(out["results"], names, num_fewshot)
    out["suites"] = suites.suite_tables(results, suites.expand(names, num_fewshot), names,
                                        num_fewshot)
    return out


def main() -> None:
    """lm-evaluation-harness's command line with the ``elmjax`` model registered."""
    from lm_eval.__main__ import cli_evaluate

    cli_evaluate()


if __name__ == "__main__":
    main()
