"""Writes the tiny instruction-tuning samples in this directory (hand-written, no download).

    python data_mixtures/samples/sft/build_sft_samples.py

- ``ultrafeedback.jsonl``: 32 single-turn records in UltraFeedback binarized's layout
  (``prompt``, ``prompt_id``, ``chosen``, ``rejected``, ``messages``, ``score_chosen``,
  ``score_rejected``);
- ``messages.jsonl``: 8 multi-turn ``{"messages": [...]}`` conversations, some with a system turn;
- ``commonsense.json``: 24 records in the CommonSense-170k layout of LLM-Adapters
  (``instruction``, ``input``, ``output``, ``answer``), three in the style of each of its
  eight datasets (BoolQ, PIQA, SIQA, HellaSwag, WinoGrande, ARC-e, ARC-c, OBQA).
"""

import hashlib
import json
import pathlib

HERE = pathlib.Path(__file__).resolve().parent

# (prompt, a good answer, a worse answer)
QA = [
    ("What is the capital of France?", "The capital of France is Paris.", "France."),
    ("How many days are in a week?", "A week has seven days.", "Many days."),
    ("Name three primary colours.", "Red, yellow and blue are the traditional primary colours.", "Green."),
    ("What do bees make?", "Bees make honey and wax.", "Bees make noise only."),
    ("Give me a synonym for happy.", "A synonym for happy is joyful.", "Sad."),
    ("What is two plus three?", "Two plus three is five.", "It is six."),
    ("Why is the sky blue?", "Sunlight is scattered by the air, and blue light is scattered the most, "
     "so the sky looks blue.", "Because it is."),
    ("Write a greeting for a letter.", "Dear friend, I hope this letter finds you well.", "Hi."),
    ("What is the opposite of cold?", "The opposite of cold is hot.", "Cold."),
    ("How many legs does a spider have?", "A spider has eight legs.", "Six legs."),
    ("Who wrote Hamlet?", "Hamlet was written by William Shakespeare.", "Someone in England."),
    ("What does a thermometer measure?", "A thermometer measures temperature.", "Weight."),
    ("Suggest a name for a small dog.", "You could call a small dog Pip.", "Dog."),
    ("What season comes after winter?", "Spring comes after winter.", "Autumn."),
    ("Translate 'thank you' into French.", "In French, 'thank you' is 'merci'.", "Gracias."),
    ("What is water made of?", "Water is made of hydrogen and oxygen.", "Water is made of water."),
    ("Give one tip for sleeping well.", "Go to bed at the same time every night.", "Drink coffee late."),
    ("What is the largest planet in our solar system?", "Jupiter is the largest planet in our solar system.",
     "The Moon."),
    ("How do you make a cup of tea?", "Boil water, pour it over a tea bag, wait three minutes, then "
     "remove the bag.", "Use cold water."),
    ("What is a noun?", "A noun is a word that names a person, place or thing.", "A kind of verb."),
    ("Which animal is known as the king of the jungle?", "The lion is called the king of the jungle.",
     "The mouse."),
    ("How many minutes are in an hour?", "There are sixty minutes in an hour.", "One hundred."),
    ("Describe the moon in one sentence.", "The moon is a rocky world that shines with the light of the sun.",
     "It is cheese."),
    ("What should you do before crossing a road?", "Stop, look both ways and listen for traffic.",
     "Run across."),
    ("Finish the phrase: an apple a day...", "An apple a day keeps the doctor away.", "Is an apple."),
    ("What is the freezing point of water in Celsius?", "Water freezes at zero degrees Celsius.",
     "Fifty degrees."),
    ("Name a fruit that is yellow.", "A banana is a yellow fruit.", "A cherry."),
    ("Why do we need to drink water?", "Our bodies need water to stay cool, digest food and carry "
     "nutrients.", "We do not."),
    ("What is the plural of mouse?", "The plural of mouse is mice.", "Mouses."),
    ("Write a short poem about rain.", "Soft rain on the roof,\nslow songs on the glass,\nthe garden "
     "drinks deep.", "Rain rain."),
    ("What instrument has black and white keys?", "The piano has black and white keys.", "The drum."),
    ("How can I say hello politely?", "You can say: Good morning, it is nice to meet you.", "Hey you."),
]

CONVERSATIONS = [
    [("system", "You are a helpful assistant who answers briefly."),
     ("user", "What is the boiling point of water?"), ("assistant", "One hundred degrees Celsius at sea level."),
     ("user", "And in Fahrenheit?"), ("assistant", "Two hundred and twelve degrees Fahrenheit.")],
    [("user", "I want to learn to cook."), ("assistant", "Start with simple dishes such as eggs or soup."),
     ("user", "Which soup is easiest?"), ("assistant", "Tomato soup is easy: tomatoes, onion, stock and salt.")],
    [("user", "Tell me a fact about cats."), ("assistant", "Cats sleep for about fifteen hours a day."),
     ("user", "Why so much?"), ("assistant", "They are hunters and save energy for short bursts of action.")],
    [("system", "You are a patient maths tutor."), ("user", "What is ten times ten?"),
     ("assistant", "Ten times ten is one hundred."), ("user", "And half of that?"),
     ("assistant", "Half of one hundred is fifty.")],
    [("user", "Recommend a book for a long journey."),
     ("assistant", "Try a long novel such as War and Peace; it will last the whole trip.")],
    [("user", "How do plants grow?"), ("assistant", "Plants use sunlight, water and air to make their food."),
     ("user", "What is that called?"), ("assistant", "It is called photosynthesis.")],
    [("system", "Answer as a friendly guide."), ("user", "Where should I walk in the city?"),
     ("assistant", "Walk along the river in the morning, then visit the old market."),
     ("user", "Thank you!"), ("assistant", "You are welcome. Enjoy your walk!")],
    [("user", "Spell the word necessary."), ("assistant", "N, E, C, E, S, S, A, R, Y."),
     ("user", "Now backwards."), ("assistant", "Y, R, A, S, S, E, C, E, N.")],
]

FMT = {
    "boolq": ("Please answer the following question with true or false, question: {q}\n\n"
              "Answer format: true/false"),
    "piqa": ("Please choose the correct solution to the question: {q}\n\n{opts}\n\n"
             "Answer format: solution1/solution2"),
    "siqa": ("Please choose the correct answer to the question: {q}\n\n{opts}\n\n"
             "Answer format: answer1/answer2/answer3"),
    "hellaswag": ("Please choose the correct ending to complete the given sentence: {q}\n\n{opts}\n\n"
                  "Answer format: ending1/ending2/ending3/ending4"),
    "winogrande": ("Please choose the correct answer to fill in the blank to complete the given "
                   "sentence: {q}\n\n{opts}\n\nAnswer format: option1/option2"),
    "arc": ("Please choose the correct answer to the question: {q}\n\n{opts}\n\n"
            "Answer format: answer1/answer2/answer3/answer4"),
}
LABEL = {"piqa": "Solution", "siqa": "Answer", "hellaswag": "Ending", "winogrande": "Option", "arc": "Answer"}

# (dataset, question, options, index of the right option (or "true"/"false"))
COMMONSENSE = [
    ("boolq", "is the sun a star", [], "true"),
    ("boolq", "do fish breathe air through lungs", [], "false"),
    ("boolq", "is ice lighter than liquid water", [], "true"),
    ("piqa", "How do you keep bread fresh for longer?", ["Store it in a sealed bag.", "Leave it in the sun."], 1),
    ("piqa", "How do you dry wet shoes?", ["Put them in the freezer.", "Stuff them with newspaper."], 2),
    ("piqa", "How can you open a tight jar lid?", ["Run the lid under hot water.", "Shake the jar."], 1),
    ("siqa", "Alex gave Sam a present on his birthday. How would Sam feel?",
     ["angry", "grateful", "tired"], 2),
    ("siqa", "Jordan forgot her umbrella and it rained. What will Jordan do next?",
     ["look for shelter", "go swimming", "plant flowers"], 1),
    ("siqa", "Casey studied all night for the test. Why did Casey do this?",
     ["to pass the test", "to miss the test", "to sleep well"], 1),
    ("hellaswag", "A man pours pancake batter into a hot pan. He",
     ["waits and flips the pancake.", "throws the pan in the river.", "paints the wall.",
      "reads a newspaper upside down."], 1),
    ("hellaswag", "A girl ties her running shoes at the start line. She",
     ["falls asleep.", "starts running when the whistle blows.", "eats the shoes.", "sings opera."], 2),
    ("hellaswag", "The gardener digs a hole in the soil. He",
     ["drives to the moon.", "bakes a cake in it.", "places a young tree in the hole.", "closes the window."], 3),
    ("winogrande", "The trophy did not fit in the suitcase because the _ was too big.",
     ["trophy", "suitcase"], 1),
    ("winogrande", "Anna lent Maria her notes because _ had missed the lecture.", ["Anna", "Maria"], 2),
    ("winogrande", "The cup fell on the carpet but did not break because the _ was soft.",
     ["carpet", "cup"], 1),
    ("arc", "Which of these is a source of light?", ["a mirror", "the sun", "the moon's surface", "a rock"], 2),
    ("arc", "What do plants need to make food?", ["sunlight", "sand", "salt", "smoke"], 1),
    ("arc", "Which state of matter has a fixed shape?", ["gas", "liquid", "solid", "steam"], 3),
    ("arc", "Which gas do animals breathe out?", ["oxygen", "nitrogen", "helium", "carbon dioxide"], 4),
    ("arc", "What causes the seasons on Earth?", ["the tilt of its axis", "the moon's phases",
                                                  "ocean tides", "volcanoes"], 1),
    ("arc", "Which tool measures mass?", ["a ruler", "a balance", "a clock", "a compass"], 2),
    ("arc", "Which is a renewable resource?", ["coal", "oil", "wind", "natural gas"], 3),
    ("arc", "What is the main job of the roots of a plant?", ["make seeds", "take in water",
                                                              "catch insects", "make flowers"], 2),
    ("arc", "A magnet will attract which object?", ["a paper clip", "a plastic spoon", "a glass marble",
                                                    "a wooden block"], 1),
]


def main():
    with open(HERE / "ultrafeedback.jsonl", "w") as f:
        for i, (prompt, good, bad) in enumerate(QA):
            chosen = [{"content": prompt, "role": "user"}, {"content": good, "role": "assistant"}]
            rejected = [{"content": prompt, "role": "user"}, {"content": bad, "role": "assistant"}]
            f.write(json.dumps({"prompt": prompt, "prompt_id": hashlib.sha256(prompt.encode()).hexdigest(),
                                "chosen": chosen, "rejected": rejected, "messages": chosen,
                                "score_chosen": 9.0 - i % 3, "score_rejected": 2.0 + i % 3}) + "\n")
    with open(HERE / "messages.jsonl", "w") as f:
        for conv in CONVERSATIONS:
            f.write(json.dumps({"messages": [{"role": r, "content": c} for r, c in conv]}) + "\n")
    records = []
    for name, question, options, right in COMMONSENSE:
        if name == "boolq":
            instruction = FMT[name].format(q=question)
            answer = right
        else:
            opts = "\n".join(f"{LABEL[name]}{k + 1}: {o}" for k, o in enumerate(options))
            instruction = FMT[name].format(q=question, opts=opts)
            answer = f"{LABEL[name].lower()}{right}"
        records.append({"instruction": instruction, "input": "",
                        "output": f"the correct answer is {answer}", "answer": answer})
    (HERE / "commonsense.json").write_text(json.dumps(records, indent=1) + "\n")


if __name__ == "__main__":
    main()
