"""Builds synthetic/worked_problems.jsonl: programmatically generated worksheets of arithmetic
word problems with step-by-step solutions, the stand-in for LLM-generated synthetic data in the
quickstart's second curriculum phase.

Each record is ``{"text", "metadata": {"generator", "score"}}``; ``score`` is the fraction of
the worksheet's answers that a checker verified (a few worksheets carry deliberate slips so the
phase-2 ``data.min_quality`` filter has something to remove). Deterministic (seeded)::

    python data_mixtures/samples/synthetic/build_synthetic.py
"""

import json
import pathlib
import random

NAMES = ["Ada", "Ben", "Cleo", "Dev", "Edith", "Farid", "Grace", "Hugo", "Ines", "Jonah"]
THINGS = [("apples", "basket"), ("books", "crate"), ("coins", "jar"), ("pencils", "tray"),
          ("stamps", "album"), ("marbles", "bag"), ("seeds", "packet"), ("cards", "deck")]


def problem(rng, slip):
    name, (thing, holder) = rng.choice(NAMES), rng.choice(THINGS)
    a, b, c = rng.randint(3, 60), rng.randint(2, 9), rng.randint(1, 40)
    total = a * b + c
    answer = total + (rng.choice([-2, -1, 1, 2]) if slip else 0)
    text = (f"Problem. {name} fills {b} {holder}s with {a} {thing} each and then finds {c} more "
            f"{thing}. How many {thing} does {name} have?\n"
            f"Solution. Each {holder} holds {a} {thing}, so {b} {holder}s hold {b} x {a} = {a * b}. "
            f"Adding the {c} found later gives {a * b} + {c} = {answer}.\n"
            f"Answer: {answer}\n")
    return text, not slip


def main():
    rng = random.Random(20240422)
    out = pathlib.Path(__file__).with_name("worked_problems.jsonl")
    with out.open("w") as f:
        for i in range(160):
            slips = set(rng.sample(range(8), rng.choice([0, 0, 0, 1, 4])))
            parts, correct = [f"Worksheet {i + 1}: multiplication and addition.\n"], 0
            for j in range(8):
                text, ok = problem(rng, j in slips)
                parts.append(text)
                correct += ok
            record = {"text": "\n".join(parts),
                      "metadata": {"generator": "build_synthetic.py", "score": correct / 8}}
            f.write(json.dumps(record) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
