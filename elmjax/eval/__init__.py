"""Evaluation: log-likelihood scoring, tasks and the paper's suites, perplexity, an lm-eval model.

    from elmjax import eval as ev
    ev.evaluate(config, params, "tok.model", ["arc_easy", "piqa"], "data/", limit=500)
    ev.evaluate(config, params, "tok.model", ["openllm", "llm360"], "data/")  # few-shot suites
    ev.perplexity(config, params, token_docs)          # exp(mean token loss)
    ev.Scorer(config, params).loglikelihood([(context_ids, continuation_ids), ...])

``import elmjax.eval.lm_eval`` registers the model ``elmjax`` with lm-evaluation-harness.
"""

from elmjax.eval.harness import evaluate
from elmjax.eval.scoring import Scorer, loglikelihood, perplexity, rolling_windows
from elmjax.eval.suites import SUITES
from elmjax.eval.tasks import TASKS, Example, Task, TaskDataError

__all__ = ["Example", "SUITES", "Scorer", "TASKS", "Task", "TaskDataError", "evaluate",
           "loglikelihood", "perplexity", "rolling_windows"]
