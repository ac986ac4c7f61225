#!/usr/bin/env python3
"""Independent reference for EdgeLM's lm-evaluation-harness task formatting (standard library only).

Re-implements, from the task YAML text of lm-evaluation-harness, what each request looks like:
  arc_easy.yaml / arc_challenge.yaml  doc_to_text "Question: {{question}}\\nAnswer:", doc_to_choice "{{choices.text}}",
                                      doc_to_target "{{choices.label.index(answerKey)}}"
  piqa.yaml                           doc_to_text "Question: {{goal}}\\nAnswer:", doc_to_choice "{{[sol1, sol2]}}", doc_to_target label
  hellaswag.yaml + utils.py           query = preprocess(activity_label + ": " + ctx_a + " " + ctx_b.capitalize()),
                                      choices = [preprocess(e) for e in endings]
  target_delimiter " ", fewshot_delimiter "\\n\\n", default ContextSampler with random.Random(1234).
It also records the HFLM._encode_pair whitespace split and random.Random(1234).sample() draws.

Run from the repository root:  python3 tools/eval-reference/reference.py
Writes tests/data/eval/reference.json, which is committed so CI needs no Python.
"""
import json
import os
import random
import re
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SHARED = os.environ.get("EDGELM_SHARED") or os.path.join(ROOT, "..", "shared")
OUT = os.path.join(ROOT, "tests", "data", "eval", "reference.json")


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def hellaswag_preprocess(text):
    text = text.strip()
    text = text.replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    text = text.replace("  ", " ")
    return text


def arc(doc):
    return ("Question: " + doc["question"] + "\nAnswer:", list(doc["choices"]["text"]),
            doc["choices"]["label"].index(doc["answerKey"]))


def piqa(doc):
    return ("Question: " + doc["goal"] + "\nAnswer:", [doc["sol1"], doc["sol2"]], int(doc["label"]))


def hellaswag(doc):
    ctx = doc["ctx_a"] + " " + doc["ctx_b"].capitalize()
    return (hellaswag_preprocess(doc["activity_label"] + ": " + ctx),
            [hellaswag_preprocess(e) for e in doc["endings"]], int(doc["label"]))


def encode_pair_split(context, continuation):
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces > 0:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    return context, continuation


def request_record(task, doc_id, text, choices, gold, fewshot=""):
    context = fewshot + text
    return {
        "task": task,
        "doc_id": doc_id,
        "context": context,
        "continuations": [" " + c for c in choices],
        "gold": gold,
        "choice_lengths": [len(c) for c in choices],
    }


def main():
    records = []
    arc_docs = read_jsonl(os.path.join(SHARED, "datasets", "arc_challenge", "test.jsonl"))
    for i, doc in enumerate(arc_docs[:40]):
        records.append(request_record("arc_challenge", i, *arc(doc)))

    piqa_docs = read_jsonl(os.path.join(SHARED, "datasets", "piqa", "valid.jsonl"))
    with open(os.path.join(SHARED, "datasets", "piqa", "valid-labels.lst"), encoding="utf-8") as f:
        labels = [int(x) for x in f.read().split()]
    for i, doc in enumerate(piqa_docs[:40]):
        doc = dict(doc, label=labels[i])
        records.append(request_record("piqa", i, *piqa(doc)))

    hs_docs = read_jsonl(os.path.join(ROOT, "tests", "data", "eval", "hellaswag_sample.jsonl"))
    for i, doc in enumerate(hs_docs):
        records.append(request_record("hellaswag", i, *hellaswag(doc)))

    # Few-shot: ARC-Challenge test items 100..299 stand in for a training split; items 0..9 get 3 examples each,
    # one sampler (random.Random(1234)) advanced item after item, as lm-eval's ContextSampler.
    pool = [arc(d) for d in arc_docs[100:300]]
    rnd = random.Random(1234)
    fewshot = []
    for i, doc in enumerate(arc_docs[:10]):
        picked = rnd.sample(pool, 3)
        prefix = "".join(t + " " + c[g] + "\n\n" for t, c, g in picked)
        fewshot.append(request_record("arc_challenge", i, *arc(doc), fewshot=prefix))

    rng = random.Random(1234)
    draws = []
    for n, k in [(200, 3), (10, 5), (1119, 25), (5, 5), (30, 10), (2000, 1), (21, 4), (22, 6)]:
        draws.append({"n": n, "k": k, "sample": rng.sample(range(n), k)})

    splits = []
    for ctx, cont in [("Question: x\nAnswer:", " yes"), ("ends with space ", "cont"), ("tabs\t \n", " c"),
                      ("no trailing", " c"), ("   ", "only spaces"), ("unicode\u00a0", "x"), ("sep\x1c", "y")]:
        c2, k2 = encode_pair_split(ctx, cont)
        splits.append({"context": ctx, "continuation": cont, "split_context": c2, "split_continuation": k2})

    reprs = [{"value": v, "repr": repr(v)} for v in
             [-5.234375, -1e-05, -0.0001, -123456.789, -1.0, -1234567890123456.0, -1.2345678901234567e16, -0.1, -3.0e-7, 2.5]]

    with open(OUT, "w", encoding="utf-8", newline="\n") as f:
        json.dump({"generator": "tools/eval-reference/reference.py", "python": sys.version.split()[0],
                   "requests": records, "fewshot": fewshot, "python_random": draws,
                   "encode_pair": splits, "float_repr": reprs}, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {OUT}: {len(records)} requests, {len(fewshot)} few-shot contexts")


if __name__ == "__main__":
    main()
