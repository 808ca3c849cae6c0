#!/usr/bin/env python3
"""Writes data/tiny_corpus.jsonl: a small synthetic English corpus for the README's training demo.

Sentences come from fixed templates and word lists with a seeded generator, so the file is reproducible and
free of any licence. The structure (articles, agreement, recurring phrases) is what a tiny byte-level model
learns visibly in a couple of minutes on a CPU. Usage: python3 tools/make_tiny_corpus.py [--lines 3000]
"""
import argparse, json, random

ADJ = ["small", "quiet", "bright", "old", "brave", "clever", "green", "sleepy", "happy", "tall"]
NOUN = ["cat", "dog", "bird", "fox", "child", "farmer", "teacher", "robot", "river", "garden"]
VERB = ["sees", "follows", "helps", "finds", "watches", "likes", "carries", "visits"]
PLACE = ["near the river", "in the garden", "under the tree", "on the hill", "by the old house"]
TIME = ["every morning", "at night", "in the spring", "after the rain", "before dinner"]


def sentence(rng):
    a, b = rng.choice(NOUN), rng.choice(NOUN)
    forms = [
        f"the {rng.choice(ADJ)} {a} {rng.choice(VERB)} the {b} {rng.choice(PLACE)}.",
        f"{rng.choice(TIME)}, the {a} {rng.choice(VERB)} a {rng.choice(ADJ)} {b}.",
        f"one, two, three, four, five: the {a} counts to five {rng.choice(TIME)}.",
        f"the {a} is {rng.choice(ADJ)} and the {b} is {rng.choice(ADJ)}.",
    ]
    return rng.choice(forms)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=3000)
    ap.add_argument("--out", default="data/tiny_corpus.jsonl")
    a = ap.parse_args()
    rng = random.Random(2026)
    with open(a.out, "w") as f:
        for _ in range(a.lines):
            text = " ".join(sentence(rng) for _ in range(rng.randint(1, 3)))
            f.write(json.dumps({"text": text}) + "\n")


if __name__ == "__main__":
    main()
