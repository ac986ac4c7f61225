// Writes tests/data/tokenizer/qwen-tiktoken-corpus.jsonl: {"text": ..., "ids": [...]} per line, the ids that the
// `tiktoken` package (the Rust tiktoken compiled to WebAssembly, i.e. what Qwen v1's QWenTokenizer runs) produces for
// the texts of qwen-corpus.jsonl, with a Qwen v1 tokenizer whose ranks are built here from the Qwen2 vocabulary.
//
// The real qwen.tiktoken is not available, so the rank file is rebuilt from ../shared/tokenizers/qwen/tokenizer.json:
// each ordinary token's byte-level string decoded to raw bytes, rank = id, for ids below 151643 (Qwen2 kept Qwen's
// BPE ranks). Then come Qwen v1's special tokens (<|endoftext|>, <|im_start|>, <|im_end|>, <|extra_0|>..<|extra_204|>)
// and its pattern (tokenization_qwen.py's PAT_STR). Like QWenTokenizer.tokenize, text is NFC-normalized first and
// special tokens in the text are recognized (allowed_special="all").
//
// Regenerate:  cd tools/tokenizer-vectors && npm ci && node generate-tiktoken.mjs

import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Tiktoken } from "tiktoken";

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = resolve(here, "..", "..");
const sharedDir = process.env.EDGELM_SHARED || resolve(repoRoot, "..", "shared");
const corpusPath = join(repoRoot, "tests", "data", "tokenizer", "qwen-corpus.jsonl");
const outPath = join(repoRoot, "tests", "data", "tokenizer", "qwen-tiktoken-corpus.jsonl");
const QWEN_RANKS = 151643;

// GPT-2's bytes_to_unicode, inverted: byte-level character -> byte.
function byteDecoder() {
  const bytes = [];
  for (let b = 0x21; b <= 0x7e; b++) bytes.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bytes.push(b);
  for (let b = 0xae; b <= 0xff; b++) bytes.push(b);
  const chars = bytes.slice();
  let extra = 0;
  for (let b = 0; b < 256; b++) if (!bytes.includes(b)) { bytes.push(b); chars.push(256 + extra++); }
  const map = new Map();
  bytes.forEach((b, i) => map.set(String.fromCharCode(chars[i]), b));
  return map;
}

const decoder = byteDecoder();
const vocab = JSON.parse(readFileSync(join(sharedDir, "tokenizers", "qwen", "tokenizer.json"), "utf8")).model.vocab;
const byRank = new Array(QWEN_RANKS);
for (const [text, id] of Object.entries(vocab)) {
  if (id >= QWEN_RANKS) continue;
  byRank[id] = Buffer.from([...text].map((ch) => {
    const b = decoder.get(ch);
    if (b === undefined) throw new Error(`token ${id} is not byte-level text`);
    return b;
  }));
}
const rankFile = byRank.map((bytes, rank) => {
  if (!bytes) throw new Error(`rank ${rank} missing`);
  return `${bytes.toString("base64")} ${rank}`;
}).join("\n");

const specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", ...Array.from({ length: 205 }, (_, i) => `<|extra_${i}|>`)];
const specialTokens = Object.fromEntries(specials.map((t, i) => [t, QWEN_RANKS + i]));
const PAT_STR = String.raw`(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`;
const enc = new Tiktoken(rankFile, specialTokens, PAT_STR);

const texts = readFileSync(corpusPath, "utf8").split("\n").filter((l) => l.length > 0).map((l) => JSON.parse(l).text);
const lines = texts.map((text) => JSON.stringify({ text, ids: Array.from(enc.encode(text.normalize("NFC"), "all")) }));
writeFileSync(outPath, lines.join("\n") + "\n");
enc.free();
console.log(`wrote ${lines.length} lines to ${outPath}`);
