// Writes tests/data/tokenizer/qwen-corpus.jsonl: {"text": ..., "ids": [...]} per line, the ids produced by an
// implementation independent of EdgeLM (@lenml/tokenizers, a fork of transformers.js) for the real Qwen tokenizer.
//
// Regenerate:  cd tools/tokenizer-vectors && npm ci && node generate.mjs
// (needs ../shared/tokenizers/qwen/tokenizer.json beside the repository root, or EDGELM_SHARED set).
//
// Deliberately absent from the corpus: U+FEFF and U+0085. JavaScript's \s contains U+FEFF but not U+0085,
// while Hugging Face's Oniguruma \s is Unicode White_Space (U+0085 yes, U+FEFF no), so for those two code
// points transformers.js is not a faithful reference. Lone surrogates are absent too (Rust strings cannot hold them).

import { readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { TokenizerLoader } from "@lenml/tokenizers";

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = resolve(here, "..", "..");
const sharedDir = process.env.EDGELM_SHARED || resolve(repoRoot, "..", "shared");
const qwenDir = join(sharedDir, "tokenizers", "qwen");
const outPath = join(repoRoot, "tests", "data", "tokenizer", "qwen-corpus.jsonl");
const chatOutPath = join(repoRoot, "tests", "data", "tokenizer", "qwen-chat.jsonl");

const tokenizer = TokenizerLoader.fromPreTrained({
  tokenizerJSON: JSON.parse(readFileSync(join(qwenDir, "tokenizer.json"), "utf8")),
  tokenizerConfig: JSON.parse(readFileSync(join(qwenDir, "tokenizer_config.json"), "utf8")),
});

const corpus = [
  // whitespace: runs, trailing spaces, tabs, CR/LF, Unicode spaces
  " ", "  ", "   ", "    ", "\t", "\t\t", "\n", "\n\n", "\n\n\n", "\r\n", "\r\n\r\n", "\r", " \n", "\n ", " \n ",
  "a ", "a  ", "a   b", "a    b  ", "  a", "\ta\tb", "a\n\nb", "a\r\nb", "line1\r\nline2\r\n", "x \t \n y",
  "end with spaces   ", "   lead and trail   ", "tabs\t\t\tthen text", "\u00a0nbsp\u00a0", "em\u2003space", "ideo\u3000space",
  "a\u2028b\u2029c", "\v\f", " \u00a0 ", "word \n\n  word", "  \n  \n", "a\n \nb", "\n\t\n",
  // digits and numbers
  "0", "7", "42", "123", "1234", "12345678901234567890", "3.14159", "-273.15", "1,000,000", "2024-01-31",
  "v1.2.3", "x86_64", "0x1F600", "1e-10", "٣٤٥ Arabic-Indic digits", "१२३ Devanagari digits", "①②③", "Ⅻ roman",
  "½ and ¾", "ied 4 ½ months",
  // contractions in all cases
  "it's", "IT'S", "It'S", "we'll", "WE'LL", "We'Ll", "they're", "THEY'RE", "I've", "I'VE", "I'm", "I'M",
  "she'd", "SHE'D", "don't", "DON'T", "'s", "'S", "''s", "'ll've", "rock 'n' roll", "the '90s", "’s curly", "o'clock",
  // punctuation runs
  "!", "!!!", "?!?!", "...", "…", "---", "—", "-- --", "a,b;c:d", "(parens)", "[[brackets]]", "{{braces}}", "<<>>",
  "\"quoted\"", "'single'", "***bold***", "__init__", "@#$%^&*", "!!!\n\n", ".\r\n", "?\n\n\nx", "a.b.c.", "¿Qué?", "¡Hola!",
  // CJK, Japanese, Korean
  "你好，世界！", "我爱北京天安门", "汉字和English混合", "中文 空格", "日本語のテキストです。", "カタカナとひらがな",
  "東京都", "한국어 텍스트", "안녕하세요!", "ｆｕｌｌｗｉｄｔｈ　ＡＢＣ１２３",
  // other scripts
  "مرحبا بالعالم", "السلام عليكم 123", "नमस्ते दुनिया", "हिन्दी", "Привет, мир!", "Ελληνικά", "שלום עולם", "ภาษาไทย",
  "Tiếng Việt có dấu", "Ærøskøbing", "straße STRASSE",
  // emoji: ZWJ sequences, skin tones, flags, keycaps
  "😀", "😀😀😀", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇯🇵🇺🇸", "1️⃣", "❤️", "hi 👋 there", "🤖🤖 robots",
  // supplementary-plane letters and digits
  "𠀀𠀁𠀂", "𝒜𝒷𝒸", "𝟙𝟚𝟛", "𐐀𐐁 Deseret", "a𠮷b", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", " 𠀀", "'𠀀",
  // combining marks that NFC composes, and ones it does not
  "e\u0301", "cafe\u0301", "A\u030A", "n\u0303o", "\u1100\u1161\u11A8", "Å", "\u0041\u0301\u0323", "x\u0301",
  "\u0301 leading combining", "ﬁ ligature", "Ω ohm",
  // code snippets
  "def f(x):\n    return x + 1\n", "int main() {\n\treturn 0;\n}", "if (a && b || !c) { x += 2; }",
  "for i in range(10):\n        print(i)", "const s = `template ${x}`;", "<div class=\"a\">text</div>",
  "SELECT * FROM t WHERE id = 42;", "x = [1, 2, 3]  # comment", "    indented\n        more\n",
  "#include <stdio.h>\n", "fn main() -> Result<(), Box<dyn Error>> {}", "a->b::c", "i++; j--;", "λx.x", "$HOME/.bashrc",
  // URLs, paths, emails
  "https://example.com/path?q=1&r=two#frag", "http://www.test.org", "user@example.com", "C:\\Windows\\System32",
  "/usr/local/bin/", "file:///tmp/x.txt",
  // special tokens inside text
  "<|endoftext|>", "<|im_start|>", "<|im_end|>", "a<|im_start|>b<|endoftext|>", "<|im_start|>user\nHello<|im_end|>\n",
  "<|im_start|><|im_start|>", " <|im_end|> ", "<|im_end", "|im_end|>", "<|endoftext|>text", "<think>\nreason\n</think>",
  "<tool_call>{\"a\":1}</tool_call>", "<|fim_prefix|>code<|fim_suffix|>", "<|vision_start|><|image_pad|><|vision_end|>",
  // mixed
  "Hello world", " Hello world", "Hello World", "HELLO WORLD", "Hello, y'all! How are you 😁 ?我想在apple工作1314151天～",
  "The quick brown fox jumps over the lazy dog.", "3333333333333333", "a1b2c3", "ABC123def", "__ggml__", "\u00ad soft hyphen",
  "zero\u200bwidth", "joiner\u200dtest", "mixed\tCJK中文\tand 한국어\n",
];

// Seeded pseudo-random mixtures of tricky pieces, so that the corpus also covers combinations nobody wrote by hand.
const pieces = [" ", "  ", "\t", "\n", "\r\n", "a", "Z", "'s", "'LL", "1", "234", ".", "!!", "中", "日本", "😀", "👍🏽",
  "𠀀", "e\u0301", "é", "-", "_", "(", ")", "ß", "Ж", "ا", "क", "\u3000", "<|im_end|>", "abc", "XYZ", "ne'er"];
let seed = 12345;
const next = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
for (let i = 0; i < 40; i++) {
  let s = "";
  const n = 2 + Math.floor(next() * 12);
  for (let j = 0; j < n; j++) s += pieces[Math.floor(next() * pieces.length)];
  corpus.push(s);
}

const seen = new Set();
const lines = [];
for (const text of corpus) {
  if (seen.has(text)) continue;
  seen.add(text);
  if (/[\uFEFF\u0085]/.test(text)) throw new Error("corpus must not contain U+FEFF or U+0085: " + JSON.stringify(text));
  const ids = tokenizer.encode(text, { add_special_tokens: false });
  lines.push(JSON.stringify({ text, ids }));
}
mkdirSync(dirname(outPath), { recursive: true });
writeFileSync(outPath, lines.join("\n") + "\n");
console.log(`wrote ${lines.length} lines to ${outPath}`);

// Chats rendered by a Jinja engine from qwen2.5-chat-template.jinja: the branch of Qwen2.5-Instruct's chat template
// taken when no tools are given (default system prompt, ChatML turns, grouped tool responses). The Jinja engine of
// @lenml/tokenizers 3.7.2 cannot parse Qwen3's template (shared tokenizer_config.json), so that one is not rendered here.
const templates = {
  "qwen2.5": readFileSync(join(here, "qwen2.5-chat-template.jinja"), "utf8"),
};
const chats = [
  { messages: [{ role: "user", content: "Hello!" }], add_generation_prompt: true },
  { messages: [{ role: "user", content: "Hello!" }], add_generation_prompt: false },
  { messages: [{ role: "system", content: "You are terse." }, { role: "user", content: "2+2?" }], add_generation_prompt: true },
  { messages: [{ role: "user", content: "Hi" }, { role: "assistant", content: "Hello! How can I help?" }, { role: "user", content: "Tell me a joke\nplease" }], add_generation_prompt: true },
  { messages: [{ role: "system", content: "" }, { role: "user", content: "" }], add_generation_prompt: true },
  { messages: [{ role: "user", content: "你好，世界 😀" }, { role: "assistant", content: "  spaced  " }, { role: "user", content: "again" }], add_generation_prompt: false },
  { messages: [{ role: "system", content: "S1" }, { role: "user", content: "u" }, { role: "system", content: "S2" }, { role: "user", content: "v" }], add_generation_prompt: true },
  { messages: [{ role: "user", content: "call it" }, { role: "tool", content: "{\"r\": 1}" }, { role: "tool", content: "second" }, { role: "user", content: "ok" }], add_generation_prompt: true },
];
const chatLines = [];
for (const [name, template] of Object.entries(templates)) {
  for (const chat of chats) {
    const options = { tokenize: false, add_generation_prompt: chat.add_generation_prompt };
    if (template) options.chat_template = template;
    const text = tokenizer.apply_chat_template(chat.messages, options);
    const ids = tokenizer.encode(text, { add_special_tokens: false });
    chatLines.push(JSON.stringify({ template: name, messages: chat.messages, add_generation_prompt: chat.add_generation_prompt, text, ids }));
  }
}
writeFileSync(chatOutPath, chatLines.join("\n") + "\n");
console.log(`wrote ${chatLines.length} lines to ${chatOutPath}`);
