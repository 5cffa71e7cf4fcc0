"""Request building of each task on hand-written documents, and the original release layouts."""

import math
import os

import pytest

from elmjax.eval import tasks, zero_shot_tasks
from tests.eval.eval_data import write_original_layout


def examples(task_data, name):
    return tasks.get_task(name).examples(task_data[0])


def test_arc_prompts_and_gold(task_data):
    ex = examples(task_data, "arc_easy")
    assert ex[0].requests == (("Question: Which of these is hot?\nAnswer:", " ice"),
                              ("Question: Which of these is hot?\nAnswer:", " the sun"),
                              ("Question: Which of these is hot?\nAnswer:", " snow"))
    assert [e.gold for e in ex] == [1, 0, 0]
    assert examples(task_data, "arc_challenge")[1].gold == 2
    assert tasks.get_task("arc_easy").metrics == ("acc", "acc_norm")


def test_boolq_prompt(task_data):
    ex = examples(task_data, "boolq")
    ctx = "The sky is blue because of light.\nQuestion: is the sky blue?\nAnswer:"
    assert ex[0].requests == ((ctx, " no"), (ctx, " yes"))
    assert [e.gold for e in ex] == [1, 0]
    assert tasks.get_task("boolq").metrics == ("acc",)


def test_hellaswag_preprocessing(task_data):
    ex = examples(task_data, "hellaswag")
    ctx = "Cutting paper: A man takes a knife. He"
    assert [r[0] for r in ex[0].requests] == [ctx] * 4
    assert ex[0].choices == ("cuts the paper. with care.", "walks to the door.",
                             "jumps in the sky again.", "boils water.")
    assert [r[1] for r in ex[0].requests][0] == " cuts the paper. with care."
    # ctx_b.capitalize() lower-cases the rest of ctx_b, as lm-eval's preprocessing does.
    assert ex[1].requests[0][0] == "Kitchen: A woman opens the door. She puts a cup on the table."
    # A WikiHow record: empty ctx_b; " [title]" becomes ". ", other [markers] go.
    assert ex[2].requests[0][0] == ("Food and Entertaining: How to boil water. Put "
                                    "water in a cup. Heat it with fire.")
    # lm-eval strips before removing markers, so a leading "[substeps] " leaves a space.
    assert ex[2].choices[0] == " The water is hot."
    assert [e.gold for e in ex] == [0, 2, 0]


def test_piqa_and_sciq_prompts(task_data):
    ex = examples(task_data, "piqa")
    assert ex[1].requests == (("Question: To boil water\nAnswer:", " put it in the sky."),
                              ("Question: To boil water\nAnswer:", " heat it with fire."))
    assert ex[1].gold == 1
    ex = examples(task_data, "sciq")
    ctx = ("The sun is hot. It gives light and energy to the earth.\n"
           "Question: What does the sun give?\nAnswer:")
    assert ex[0].requests[3] == (ctx, " light")
    assert ex[0].choices == ("rock", "ice", "sand", "light") and ex[0].gold == 3
    assert ex[1].requests[0][0] == "\nQuestion: What is in the body?\nAnswer:"


def test_winogrande_partial_scoring(task_data):
    ex = examples(task_data, "winogrande")
    assert ex[0].requests == (("The cup fell off the table because the cup", " was small."),
                              ("The cup fell off the table because the table", " was small."))
    assert [e.gold for e in ex] == [1, 1, 0]
    assert tasks.get_task("winogrande").metrics == ("acc",)


def test_limit_takes_the_first_documents(task_data):
    assert len(tasks.get_task("arc_easy").examples(task_data[0], limit=2)) == 2


def test_metrics_and_stderr():
    task = tasks.get_task("arc_easy")
    ex = tasks.Example("q", ("a", "bbbbbb"), 1)
    # raw argmax picks "a"; per-character normalisation picks "bbbbbb"
    assert tasks.example_metrics(task, ex, [-2.0, -6.0]) == {"acc": 0.0, "acc_norm": 1.0}
    mean, err = tasks.mean_and_stderr([1.0, 0.0, 1.0, 1.0])
    assert mean == 0.75 and err == pytest.approx(math.sqrt(0.25 / 4))


def test_missing_data_says_where_to_put_it(tmp_path):
    with pytest.raises(tasks.TaskDataError) as e:
        tasks.get_task("piqa").examples(str(tmp_path))
    msg = str(e.value)
    assert "piqa" in msg and "validation" in msg and os.path.join(str(tmp_path), "piqa") in msg
    with pytest.raises(ValueError, match="unknown task"):
        tasks.get_task("mmlu_astrology")


def test_original_release_layouts_match_the_hub_layout(task_data, tmp_path):
    write_original_layout(str(tmp_path))
    for name in zero_shot_tasks.TASKS:
        assert tasks.get_task(name).examples(str(tmp_path)) == examples(task_data, name), name
