#!/usr/bin/env python3
"""Tiny random-weight Qwen-family GGUF files written by llama.cpp's own gguf-py, independently of EdgeLM.

Each family is written in the layout llama.cpp's convert_hf_to_gguf.py produces and src/models/<arch>.cpp loads:
  qwen   (Qwen v1)   fused attn_qkv weight + bias, feed_forward_length = 2 x MLP width, separate output head
  qwen2  (Qwen2/2.5) attn_q/k/v with biases, GQA, tied output head (no output.weight)
  qwen3  (Qwen3)     attn_q/k/v without biases, per-head attn_q_norm/attn_k_norm, head_dim != hidden / heads
The tokenizer.ggml.* keys come from a Hugging Face tokenizer.json (the real 151k Qwen vocabulary) the way
convert_hf_to_gguf's _set_vocab_gpt2 writes them. Weights depend only on (seed, family, tensor name), so a run is
reproducible and every storage type of one family holds the same model.

usage: write_tiny_models.py --out DIR --tokenizer tokenizer.json [--gguf-py DIR] [--seed N] [--types f32,f16,q8_0,qwen2:q4_0]
Prints one line per file: FAMILY TYPE PATH.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

# name -> (architecture, hidden, mlp width, layers, heads, kv heads, head dim, tied head, rope theta, context)
FAMILIES = {
    "qwen": ("qwen", 64, 192, 2, 4, 4, 16, False, 10000.0, 8192),
    "qwen2": ("qwen2", 64, 192, 2, 4, 2, 16, True, 1000000.0, 32768),
    "qwen3": ("qwen3", 64, 192, 2, 4, 2, 32, False, 1000000.0, 40960),
}
VOCAB_SIZE = 151936  # config.json vocab_size of Qwen 1/2/2.5/3: the tokenizer's 151665 ids padded for the GEMMs
EOS_ID = 151643  # <|endoftext|>


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--tokenizer", required=True, help="Hugging Face tokenizer.json of Qwen")
    parser.add_argument("--gguf-py", default=os.path.join(HERE, "build", "src", "gguf-py"),
                        help="llama.cpp's gguf-py directory (setup.sh extracts it)")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--types", default="f32,f16,q8_0",
                        help="comma-separated: f32,f16,bf16,q8_0,q4_0,q4_1,q5_0,q5_1; FAMILY:TYPE for one family only")
    parser.add_argument("--families", default=",".join(FAMILIES))
    args = parser.parse_args()

    if not os.path.isfile(os.path.join(args.gguf_py, "gguf", "__init__.py")):
        return fail(f"no gguf-py at {args.gguf_py} (run tools/llama-reference/setup.sh)")
    sys.path.insert(0, args.gguf_py)
    try:
        import numpy as np  # noqa: F401
        import gguf  # noqa: F401
    except ImportError as e:
        return fail(f"{e} (apt-get install python3-numpy)")

    families = [f for f in args.families.split(",") if f]
    types = [t for t in args.types.split(",") if t]
    for f in families:
        if f not in FAMILIES:
            return fail(f"unknown family '{f}' (known: {', '.join(FAMILIES)})")
    for t in types:
        family_only, _, t = t.rpartition(":")
        if family_only and family_only not in FAMILIES:
            return fail(f"unknown family '{family_only}' in --types (known: {', '.join(FAMILIES)})")
        if t not in storage_types():
            return fail(f"unknown type '{t}' (known: {', '.join(storage_types())})")
    try:
        vocab = read_vocab(args.tokenizer)
    except (OSError, ValueError, KeyError) as e:
        return fail(f"cannot read tokenizer {args.tokenizer}: {e}")

    os.makedirs(args.out, exist_ok=True)
    for family in families:
        for entry in types:
            family_only, _, type_name = entry.rpartition(":")
            if family_only and family_only != family:
                continue
            path = os.path.join(args.out, f"{family}-{type_name}.gguf")
            write_model(path, family, type_name, vocab, args.seed)
            print(f"{family} {type_name} {path}", flush=True)
        _RANDOM_TENSORS.clear()
    return 0


def fail(message: str) -> int:
    print(f"write_tiny_models: error: {message}", file=sys.stderr)
    return 1


def storage_types():
    from gguf import GGMLQuantizationType as Q
    return {"f32": Q.F32, "f16": Q.F16, "bf16": Q.BF16, "q8_0": Q.Q8_0, "q4_0": Q.Q4_0, "q4_1": Q.Q4_1,
            "q5_0": Q.Q5_0, "q5_1": Q.Q5_1}


def read_vocab(tokenizer_path: str):
    """Token list, types and merges as convert_hf_to_gguf's get_vocab_base + SpecialVocab write them."""
    import gguf
    with open(tokenizer_path, encoding="utf-8") as f:
        tok = json.load(f)
    model = tok["model"]
    if model.get("type") != "BPE":
        raise ValueError(f"model type {model.get('type')} is not BPE")
    reverse = {i: t for t, i in model["vocab"].items()}
    added = {a["id"]: a for a in tok.get("added_tokens", [])}
    tokens, toktypes = [], []
    for i in range(VOCAB_SIZE):
        if i in added:
            tokens.append(added[i]["content"])
            toktypes.append(gguf.TokenType.CONTROL if added[i].get("special") else gguf.TokenType.USER_DEFINED)
        elif i in reverse:
            tokens.append(reverse[i])
            toktypes.append(gguf.TokenType.NORMAL)
        else:
            tokens.append(f"[PAD{i}]")
            toktypes.append(gguf.TokenType.UNUSED)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    return tokens, toktypes, merges


def tensor_plan(family: str):
    """(GGUF name, numpy shape = reversed ggml ne, kind) in llama.cpp's layout for the family."""
    arch, d, ff, layers, heads, kv_heads, head_dim, tied, _, _ = FAMILIES[family]
    q, kv = heads * head_dim, kv_heads * head_dim
    plan = [("token_embd.weight", (VOCAB_SIZE, d), "embedding")]
    for i in range(layers):
        p = f"blk.{i}."
        plan.append((p + "attn_norm.weight", (d,), "norm"))
        if arch == "qwen":
            # c_attn of Qwen v1: rows are q, then k, then v; the bias is fused the same way.
            plan.append((p + "attn_qkv.weight", (q + 2 * kv, d), "matrix"))
            plan.append((p + "attn_qkv.bias", (q + 2 * kv,), "bias"))
        else:
            plan.append((p + "attn_q.weight", (q, d), "matrix"))
            plan.append((p + "attn_k.weight", (kv, d), "matrix"))
            plan.append((p + "attn_v.weight", (kv, d), "matrix"))
            if arch == "qwen2":
                plan.append((p + "attn_q.bias", (q,), "bias"))
                plan.append((p + "attn_k.bias", (kv,), "bias"))
                plan.append((p + "attn_v.bias", (kv,), "bias"))
            if arch == "qwen3":
                plan.append((p + "attn_q_norm.weight", (head_dim,), "norm"))
                plan.append((p + "attn_k_norm.weight", (head_dim,), "norm"))
        plan.append((p + "attn_output.weight", (d, q), "matrix"))
        plan.append((p + "ffn_norm.weight", (d,), "norm"))
        plan.append((p + "ffn_gate.weight", (ff, d), "matrix"))
        plan.append((p + "ffn_up.weight", (ff, d), "matrix"))
        plan.append((p + "ffn_down.weight", (d, ff), "matrix"))
    plan.append(("output_norm.weight", (d,), "norm"))
    if not tied:
        plan.append(("output.weight", (VOCAB_SIZE, d), "head"))
    return plan


_RANDOM_TENSORS: dict = {}


def cached_random_tensor(seed: int, family: str, name: str, shape, kind: str):
    """random_tensor, generated once per run for all storage types of a family (the embedding dominates)."""
    key = (seed, family, name)
    if key not in _RANDOM_TENSORS:
        _RANDOM_TENSORS[key] = random_tensor(seed, family, name, shape, kind)
    return _RANDOM_TENSORS[key]


def random_tensor(seed: int, family: str, name: str, shape, kind: str):
    import numpy as np
    digest = hashlib.sha256(f"{seed}/{family}/{name}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
    # Scales keep activations near unit RMS through the layers and give the logits a spread of a few units,
    # so attention is far from uniform (RoPE matters) and the top-1 token is not a near-tie.
    if kind == "norm":
        values = 1.0 + 0.2 * rng.standard_normal(shape)
    elif kind == "bias":
        values = 0.5 * rng.standard_normal(shape)  # large enough that a dropped bias changes the logits clearly
    elif kind == "embedding":
        values = 0.5 * rng.standard_normal(shape)
    elif kind == "head":
        values = 0.5 * rng.standard_normal(shape)
    else:
        values = rng.standard_normal(shape) / np.sqrt(shape[1])
    return values.astype(np.float32)


_PACKED_ARRAYS: dict = {}


def _cached_writer_class():
    """GGUFWriter that packs each large metadata array (token list, types, merges) once per run instead of once
    per file: gguf-py packs them item by item in Python, which is most of the time of writing a tiny model."""
    import gguf

    class CachedWriter(gguf.GGUFWriter):
        def _pack_val(self, val, vtype, add_vtype, sub_type=None):
            if vtype != gguf.GGUFValueType.ARRAY or not isinstance(val, list) or len(val) < 4096:
                return super()._pack_val(val, vtype, add_vtype, sub_type)
            key = (id(val), add_vtype, sub_type)
            if key not in _PACKED_ARRAYS:
                _PACKED_ARRAYS[key] = (val, super()._pack_val(val, vtype, add_vtype, sub_type))  # val keeps id unique
            return _PACKED_ARRAYS[key][1]

    return CachedWriter


def write_model(path: str, family: str, type_name: str, vocab, seed: int) -> None:
    import numpy as np
    import gguf
    from gguf import GGMLQuantizationType as Q
    arch, d, ff, layers, heads, kv_heads, head_dim, tied, theta, ctx = FAMILIES[family]
    tokens, toktypes, merges = vocab
    qtype = storage_types()[type_name]
    file_type = {Q.F32: gguf.LlamaFileType.ALL_F32, Q.F16: gguf.LlamaFileType.MOSTLY_F16,
                 Q.BF16: gguf.LlamaFileType.MOSTLY_BF16, Q.Q8_0: gguf.LlamaFileType.MOSTLY_Q8_0,
                 Q.Q4_0: gguf.LlamaFileType.MOSTLY_Q4_0, Q.Q4_1: gguf.LlamaFileType.MOSTLY_Q4_1,
                 Q.Q5_0: gguf.LlamaFileType.MOSTLY_Q5_0, Q.Q5_1: gguf.LlamaFileType.MOSTLY_Q5_1}[qtype]

    tmp = path + ".tmp"
    w = _cached_writer_class()(tmp, arch)
    w.add_name(f"tiny {family} (synthetic, gguf-py)")
    w.add_file_type(int(file_type))
    if qtype not in (Q.F32, Q.F16):
        w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_context_length(ctx)
    w.add_embedding_length(d)
    w.add_block_count(layers)
    # Qwen v1's config.json intermediate_size counts w1 and w2 together; llama.cpp halves it (src/models/qwen.cpp).
    w.add_feed_forward_length(2 * ff if arch == "qwen" else ff)
    w.add_head_count(heads)
    if arch != "qwen":  # Qwen v1 has no num_key_value_heads; llama.cpp then uses head_count
        w.add_head_count_kv(kv_heads)
    if head_dim != d // heads:
        w.add_key_length(head_dim)
        w.add_value_length(head_dim)
    w.add_rope_freq_base(theta)
    w.add_layer_norm_rms_eps(1e-6)

    w.add_tokenizer_model("gpt2")
    # Qwen v1's tiktoken vocabulary and pre-tokenizer regex are those of Qwen1.5/2, so convert_hf_to_gguf's
    # chkhsh of its tokenization resolves to "qwen2" as well (llama-vocab.cpp: LLAMA_VOCAB_PRE_TYPE_QWEN2).
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(tokens)
    w.add_token_types(toktypes)
    w.add_token_merges(merges)
    w.add_bos_token_id(EOS_ID)
    w.add_eos_token_id(EOS_ID)
    w.add_pad_token_id(EOS_ID)
    w.add_add_bos_token(False)

    for name, shape, kind in tensor_plan(family):
        values = cached_random_tensor(seed, family, name, shape, kind)
        if len(shape) == 1 or qtype == Q.F32:
            w.add_tensor(name, values)  # 1-D tensors stay F32, as convert_hf_to_gguf keeps them
        elif qtype == Q.F16:
            w.add_tensor(name, values.astype(np.float16))
        else:
            data = gguf.quants.quantize(values, qtype)
            w.add_tensor(name, data, raw_dtype=qtype)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
