#!/usr/bin/env python3
"""Golden data for the Swift tokenizer (Sources/FlamingoCore/Text/).

Run from the repository root (about 15 seconds, single-threaded; same files on every run):

    /work/refenv/bin/python tools/reference/make_tokenizer_goldens.py

It deletes and rewrites Tests/Fixtures/tokenizers/ completely (under 2 MB).  Rerun it after
tools/reference/make_fixtures.py if that changes the fixtures' tokenizer.json files.  Nothing is downloaded: the
tokenizers are TRAINED here with Hugging Face `tokenizers` on a mixed corpus generated from a fixed
seed, configured like the real ones, then wrapped in transformers' PreTrainedTokenizerFast and given
the OpenFlamingo special tokens exactly as open_flamingo/src/factory.py does:

  neox_bpe          the GPT-NeoX-20B layout (MPT-1B/7B, RedPajama): NFC normaliser, ByteLevel
                    pre-tokeniser (add_prefix_space false, GPT-2 regex), ByteLevel post-processor and
                    decoder, <|endoftext|> = 0 / <|padding|> = 1, the non-special normalised added
                    token "  " (id 50276 in the real file).  Written in the real file's older format:
                    merges as "a b" strings, no "use_regex" keys.
  llama_legacy      LLaMA as converted in 2023 (transformers LlamaConverter, legacy=True): normaliser
                    Sequence[Prepend("▁"), Replace(" ", "▁")], no pre-tokeniser, byte-fallback BPE with
                    fuse_unk, TemplateProcessing "<s> $A", decoder Sequence[Replace, ByteFallback, Fuse,
                    Strip].  <unk>/<s>/</s> are normalized=true here (as in some converted files), which
                    exercises the normalised-added-token path.
  llama_metaspace   LLaMA as transformers 5 writes it (legacy=False): no normaliser, Metaspace
                    pre-tokeniser with prepend_scheme "first" and split false.
  bytelevel_flags   byte-level BPE with everything the real files do not use: add_prefix_space true,
                    ignore_merges true, a Sequence normaliser, TemplateProcessing with BOS and EOS, and
                    added tokens with every flag (lstrip, rstrip, single_word, normalized, overlapping
                    contents, a decomposed content that NFC changes, contents with spaces).
  metaspace_flags   Metaspace in its oldest serialisation ("add_prefix_space": true, i.e. prepend
                    "always", split true), no byte fallback and fuse_unk false (unknown characters
                    become one <unk> each), Metaspace decoder, flagged added tokens.

plus the two committed fixture tokenizers Tests/Fixtures/{mpt_tiny,llama_tiny}/tokenizer.json.

Files (all JSON, one value per line, deterministic):

  <name>.json            the tokenizer (compact JSON)
  strings.jsonl          the test inputs, one JSON string per line (shared by every tokenizer)
  <name>.golden.jsonl    line 1: metadata (tokenizer path, vocab size, the ids the post-processor
                         puts before/after a single sequence, id_width); then one object per input
                         string (ids are packed as id_width base-64 digits each, see pack_ids):
                           "b": ids of encode(s, add_special_tokens=False)
                           "a": ids of encode(s, add_special_tokens=True), only when it is not
                                prefix + b + suffix
                           "d": decode(a) is frames.d[0] + D + frames.d[1] (what the decoder puts
                                around the text of the probe "a"), and D is s unless "d" gives it:
                                either the text or a list of literal strings and [i, j] = s[i:j]
                                (code points) to concatenate; "D" instead of "d" gives the whole
                                decode when it does not have that frame
                           "k"/"K": decode(a, skip_special_tokens=True), likewise with frames.k
                           "l": (every third string) the UTF-8 byte length of each chunk
                                DecodeStream.step returns when the ids of a are fed one by one, packed
                                by pack_lengths (0 = None; "!" = HF raised "Invalid prefix" at this
                                step, which happens when a byte-fallback group turns invalid and
                                rewrites text already emitted; the list ends there)
                         then one object per random id sequence ({"r": ids, "d", "k", "l", "ls"}):
                         decoding of arbitrary ids (byte tokens that do not form UTF-8, special tokens
                         in the middle, ...), "ls" = stream chunk lengths with skip_special_tokens.
  nfc.jsonl              HF's NFC of strings built from every code point c with a canonical
                         decomposition or a non-zero combining class: [c, NFC(c), NFD(c),
                         NFC(NFD(c)), NFC("a" c), NFC(c U+0301), NFC(c U+0301 U+0316)], 0 meaning
                         "unchanged" (for NFD(c): "equals c"); last lines [input, NFC(input)]
  classes.json           run-length table of how the ByteLevel regex classifies each code point
                         ([first code point, "L" letter | "N" number | "W" whitespace | "O" other])

Every golden is checked twice here: transformers' encode/decode must equal the raw `tokenizers`
Tokenizer reloaded from the written file, or the script stops.
"""

import os

os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import difflib  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import unicodedata  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

warnings.filterwarnings("ignore")

import tokenizers  # noqa: E402
import transformers  # noqa: E402
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers  # noqa: E402
from tokenizers.decoders import DecodeStream  # noqa: E402
from transformers import PreTrainedTokenizerFast  # noqa: E402

transformers.logging.set_verbosity_error()

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "Tests" / "Fixtures" / "tokenizers"
SEED = 20240607

# ---------------------------------------------------------------------------------------------
# corpus material
# ---------------------------------------------------------------------------------------------

ENGLISH = """\
An image of two cats sleeping on a red sofa. A man rides a bicycle along the river at sunset.
The quick brown fox jumps over the lazy dog. She sells sea shells by the sea shore.
Question: What is the color of the bus? Short answer: yellow. Question: How many people are there? Answer: three.
Output: A plate of spaghetti with tomato sauce and basil leaves. Output: a small boat in a harbour.
It's a beautiful day, isn't it? I'm sure they'll come; we've waited, you'd agree, and they're late.
Don't panic! DON'T PANIC!! "Quoted text," she said -- and then (in brackets) [square] {curly} <angle>.
The committee's report, published on 3 March 2021, recommended 17 changes; only 4 were adopted.
In 1969, Apollo 11 landed on the Moon; Neil Armstrong said: "That's one small step for man."
Photosynthesis converts light energy into chemical energy stored in glucose molecules.
The Flamingo model interleaves images and text: it conditions a frozen language model on visual features.
Email me at someone@example.com or visit https://example.org/path?query=1&lang=en#section-2.
Prices rose 3.5% to $1,299.99 (about EUR 1 180,50); the CEO called it "un-be-liev-able".
"""

CODE = """\
def fibonacci(n: int) -> int:
    if n < 2:
        return n
    return fibonacci(n - 1) + fibonacci(n - 2)

for (int i = 0; i < count; ++i) {
\tif (buffer[i] == '\\n') { lines++; }
}
const result = items.filter((x) => x.value >= 42).map(({ id }) => id);
{"name": "flamingo", "version": "1.0.0", "tags": ["vlm", "swift"], "size": 1024}
SELECT id, name FROM users WHERE created_at > '2020-01-01' ORDER BY name DESC;
#include <stdio.h>
int main(void) { printf("%d\\n", 0x7fffffff); return 0; }
<div class="caption"><img src="cat.png" alt="A cat"/></div>
$ ls -la /usr/local/lib | grep -E '^d' && echo "done" >> log.txt
x = [i ** 2 for i in range(10) if i % 3 == 0]  # squares
"""

CJK = """\
一只猫在红色的沙发上睡觉。今天天气很好，我们去公园散步吧！
机器学习是人工智能的一个分支，它使计算机能够从数据中学习。
北京是中国的首都，有着三千多年的历史。我喜欢吃饺子和面条。
猫がソファの上で寝ています。今日はとても良い天気ですね。
東京は日本の首都です。ひらがなとカタカナと漢字を使います。
고양이가 빨간 소파에서 자고 있습니다. 오늘 날씨가 정말 좋네요.
서울은 대한민국의 수도입니다. 한글은 세종대왕이 만들었습니다.
"""

RTL = """\
مرحبا بالعالم! هذه جملة باللغة العربية. القطة نائمة على الأريكة الحمراء.
اَلْعَرَبِيَّةُ لُغَةٌ جَمِيلَةٌ. كَتَبَ الطَّالِبُ الدَّرْسَ.
שלום עולם! זהו משפט בעברית. החתול ישן על הספה האדומה.
בְּרֵאשִׁית בָּרָא אֱלֹהִים אֵת הַשָּׁמַיִם וְאֵת הָאָרֶץ.
"""

OTHER_SCRIPTS = """\
Привет, мир! Съешь же ещё этих мягких французских булок, да выпей чаю.
Γειά σου Κόσμε! Η γρήγορη καφέ αλεπού πηδάει πάνω από τον τεμπέλη σκύλο.
नमस्ते दुनिया! यह हिंदी में एक वाक्य है। क़लम और ज़मीन।
สวัสดีชาวโลก ภาษาไทยไม่มีการเว้นวรรคระหว่างคำ
Tiếng Việt có rất nhiều dấu: ắ ằ ẳ ẵ ặ ế ề ể ễ ệ.
Zoë, naïve café owner, façade; Ångström; Straße; Øresund; Łódź; Škoda; ĳ.
Ελληνικά: ά έ ή ί ό ύ ώ ϊ ϋ ΐ ΰ.
"""

EMOJI = [
    "😀", "😂", "🥲", "❤️", "👍", "👍🏽", "👩‍💻", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇺🇸", "🇯🇵", "🇩🇪",
    "1️⃣", "#️⃣", "✈️", "☕", "🧑🏿‍🚀", "🫠", "🐈‍⬛", "👁️‍🗨️", "💯", "🎉", "🔥", "✨", "🙏🏻",
]

COMBINING = [
    "e\u0301", "a\u0308", "o\u0302\u0301", "u\u031b\u0300", "A\u030a", "\u212b", "\u2126", "n\u0303",
    "c\u0327", "i\u0307", "a\u0301\u0328", "a\u0328\u0301", "q\u0307\u0323", "q\u0323\u0307",
    "\u1100\u1161\u11a8", "\u1100\u1161", "\uac00\u11a8", "\u0915\u093c", "\u0958", "\uf900",
    "\u0344", "\u0340", "\u0374", "\u037e", "\u0387", "\u1e9b\u0323", "\u0627\u0653", "\u0648\u0654",
    "\u05d1\u05bc", "\u05e9\u05c1\u05bc", "\u05e9\u05bc\u05c1", "\u0628\u0651\u064e", "\u0628\u064e\u0651",
    "\u0e01\u0e34\u0e48", "\u0b47\u0b3e", "\u0bc6\u0bbe", "\u0cc6\u0cc2\u0cd5", "\u0d46\u0d3e",
    "\u1025\u102e", "\u3099", "\u304b\u3099", "\u30cf\u309a", "e\u0301\u0301\u0301", "\u00e9",
    "Z\u0335\u0327\u0316A\u0336\u0320L\u0337G\u0338\u0321O\u0334",
]

WHITESPACE = [
    " ", "  ", "   ", "    ", "        ", "\t", "\t\t", "\n", "\n\n", "\n\n\n", "\r\n", "\r", " \n",
    "\n ", " \t ", "\u00a0", "\u3000", "\u2028", "\u2029", "\u0085", "\u2009", "\u200a", "\u202f",
    "\u205f", "\u1680", "\x0b", "\x0c", "\x1c", "\x1f", "  \n  ", "\t\n\t",
]

ODD = [
    "\u200b", "\u200c", "\u200d", "\ufeff", "\u2060", "\x00", "\x01", "\x7f", "\x1b[0m", "\ufffd",
    "\ue000", "\uffff", "\ufffe", "\U0010fffd", "\U000e0041", "\U0001d400", "\u2163", "\u00bd",
    "\u00b2", "\u0660\u0661\u0662", "\u0967\u0968", "\uff11\uff12", "\u2460", "\U0001f100", "\u00ad",
    "\u0332", "\u20ac", "\u00a3", "\u00a5", "\u2014", "\u2026", "\u201cquote\u201d", "\u2018x\u2019",
    "\U0001F9D1\u200D\U0001F91D\u200D\U0001F9D1", "\u0301", "\u0301abc", " \u0301", "\U000F0000",
]

SPECIAL_CONTENTS = [
    "<image>", "<|endofchunk|>", "<PAD>", "<s>", "</s>", "<unk>", "<|endoftext|>", "<|padding|>",
    "[MASK]", "<R>", "<both>", "word", "New York", "<im", "<|bos|>", "e\u0301x", "A\u030a",
]

WORDS = """the of and to in is was for on that with as by at from his her are an be this have
which or not but had they were it one all their there been has more when who will would can
no out if so up said what its about into than them only other new some could time these two may
then first any like now my such make over our even most me made after also did many before must
through back years where much your way well down should because each just those people how too
little state good very world still own see men work long get here between both life being under
never day same another know while last might us great old year off come since against go came
right used take three picture image photo cat dog bird tree house street car bus train boat sky
water sun red blue green yellow black white small large young woman man child children table
chair window kitchen room garden river mountain beach city road light dark running walking
sitting standing holding looking playing eating reading writing flying swimming riding model
language vision token tokenizer sequence attention transformer layer weight matrix vector
Flamingo OpenFlamingo MPT LLaMA GPT NeoX Swift Python Rust unicode normalization""".split()

NUMBERS = ["0", "7", "42", "100", "2023", "3.14159", "1,000,000", "-273.15", "1e-9", "0x1F",
           "12345678901234567890", "99%", "$5", "10:30", "2021-03-03", "1/2", "v1.2.3", "#1",
           "3rd", "21st", "1000000000000", "007", "½", "٣", "১২৩"]


def lines(text):
    return [line for line in text.splitlines() if line.strip()]


def random_sentence(rng, n_words):
    words = [rng.choice(WORDS) for _ in range(n_words)]
    if rng.random() < 0.3:
        words[0] = words[0].capitalize()
    if rng.random() < 0.2:
        words.insert(rng.randrange(len(words) + 1), rng.choice(NUMBERS))
    sep = rng.choice([" ", " ", " ", ", ", " - "])
    return sep.join(words) + rng.choice([".", "!", "?", ":", ";", "", "..."])


SYLLABLES = ("ka to mi ra ne su lo pe ti va ro de ki ma no shi gu zo be fa ha yu wa chi tsu "
             "ar en or in str th ch qu ex pre con ing tion ment able ous ly er est").split()


def pseudo_word(rng):
    w = "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 4)))
    return w.capitalize() if rng.random() < 0.15 else w


def random_script_text(rng):
    """Random runs in other scripts: CJK ideographs, Hangul syllables, kana, Cyrillic, Greek."""
    kind = rng.randrange(5)
    if kind == 0:
        return "".join(chr(0x4E00 + rng.randrange(1500)) for _ in range(rng.randint(2, 12)))
    if kind == 1:
        return " ".join("".join(chr(0xAC00 + rng.randrange(600)) for _ in range(rng.randint(1, 4)))
                        for _ in range(rng.randint(1, 5)))
    if kind == 2:
        return "".join(chr(0x3041 + rng.randrange(86)) for _ in range(rng.randint(2, 10)))
    if kind == 3:
        return " ".join("".join(chr(0x430 + rng.randrange(32)) for _ in range(rng.randint(2, 9)))
                        for _ in range(rng.randint(1, 6)))
    return " ".join("".join(chr(0x3B1 + rng.randrange(25)) for _ in range(rng.randint(2, 9)))
                    for _ in range(rng.randint(1, 6)))


def training_corpus():
    """About 250 kB of mixed text; the trainers see it line by line."""
    rng = random.Random(SEED)
    out = []
    blocks = [lines(ENGLISH), CODE.splitlines(), lines(CJK), lines(RTL), lines(OTHER_SCRIPTS)]
    for _ in range(30):
        for b in blocks:
            out.extend(b)
    for _ in range(3000):
        out.append(random_sentence(rng, rng.randint(3, 14)))
    for _ in range(4000):
        out.append(" ".join(pseudo_word(rng) for _ in range(rng.randint(2, 10))))
    for _ in range(1500):
        out.append(random_script_text(rng))
    for _ in range(300):
        out.append(" ".join(rng.choice(EMOJI) for _ in range(rng.randint(1, 5))))
        out.append(rng.choice(NUMBERS) + " " + rng.choice(NUMBERS) + rng.choice(["", "\n", "  "]))
        out.append(rng.choice(WORDS) + rng.choice(WHITESPACE[:14]) + rng.choice(WORDS))
    return out


# ---------------------------------------------------------------------------------------------
# test strings
# ---------------------------------------------------------------------------------------------

FIXED = [
    "", " ", "  ", "   ", "\t", "\n", "\n\n", " \n ", "a", " a", "a ", "  a  ", "Hello world",
    " Hello world", "Hello world ", "Hello  world", "Hello   world", "Hello\tworld", "Hello\nworld",
    "Hello \nworld", "Hello\n world", "Hello\n\n\nworld", "Hello \u00a0world", "Hello\u3000world",
    "a<image>b", "<|endofchunk|><image>", "<image>", "<image> ", " <image>", " <image> ", "<image>\n",
    "\n<image>", "<image><image>", "<image>Output:", "<image>Output: a cat.<|endofchunk|>",
    "<image>Output:A small dog.<|endofchunk|><image>Output:", "x<|endofchunk|>", "<|endofchunk|>x",
    "<<image>>", "<ima", "<image", "image>", "<im<image>age>", "<PAD>", "<PAD><PAD>", "a<PAD>",
    "<s>", "</s>", "<unk>", "<s>Hello</s>", " <s> ", "<s><s>", "<|endoftext|>", "<|padding|>",
    "text<|endoftext|>more", "[MASK]", "a [MASK] b", "a[MASK]b", "a  [MASK]  b", "<R>", "a <R>  b",
    "a<R>\n b", "<both>", "x <both> y", "x  <both>  y", "word", "a word here", "awordb", "words",
    "word.", "(word)", "_word", "word_", "word1", "éword", "New York", "New  York", "NewYork",
    "I love New York!", "e\u0301x", "\u00e9x", "A\u030a", "\u00c5", "\u212b", "<im", "<imag",
    "I'm", "you'll", "they've", "she'd", "it's", "we're", "don't", "DON'T", "they'RE", "''s", "'s",
    " 's", "'", "''", "' s", "rock'n'roll", "O'Neil", "'ll've",
    "12345678901234567890", "3.14159", "1,000,000", "$100.00", "2021-03-03T10:30:00Z", "v1.2.3",
    "https://example.org/a/b?c=d&e=f#g", "someone@example.com", "C:\\Users\\name\\file.txt",
    "    indented code", "\tx = 1", "if x:\n    return y\n", "a\r\nb\r\n", "trailing spaces   ",
    "   leading spaces", "\n\n\nleading newlines", "trailing newlines\n\n\n", " \t \n \r ",
    "🙂", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇺🇸🇯🇵", "👍🏽", "1️⃣", "a😀b", " 😀 ", "😀😀😀",
    "中文", "日本語のテキスト", "한국어", "中文 English 混合", "مرحبا", "שלום", "مرحبا hello שלום",
    "\u0628\u0651\u064e", "\u0628\u064e\u0651", "\u05e9\u05bc\u05c1", "\u05e9\u05c1\u05bc",
    "\u1100\u1161\u11a8", "\u0958", "\uf900", "\u0344", "q\u0307\u0323", "q\u0323\u0307",
    "\x00", "a\x00b", "\x7f", "\ufffd", "a\ufffd", "\ufffdb", "\u200b", "a\u200db", "\ufeffBOM",
    "\U0010fffd", "\U000e0041", "\uffff", "\u00ad", "x" * 300, "ab" * 150, " " * 50, "\n" * 20,
    "a" + " " * 30 + "b", "\t" * 10 + "x", "中" * 100, "😀" * 40, "e\u0301" * 60,
    "The quick brown fox jumps over the lazy dog.",
    "Question: What is in the image? Answer:",
    "<image>Question: What color is the car? Short answer: red.<|endofchunk|>",
]


def random_fragment(rng):
    s = _random_fragment(rng)
    return s if len(s) <= 30 else s[: rng.randint(10, 30)]


def _random_fragment(rng):
    kind = rng.randrange(14)
    if kind == 12:
        return " ".join(pseudo_word(rng) for _ in range(rng.randint(1, 6)))
    if kind == 13:
        return random_script_text(rng)
    if kind == 0:
        return rng.choice(lines(ENGLISH))[: rng.randint(5, 80)]
    if kind == 1:
        c = CODE.splitlines()
        i = rng.randrange(len(c))
        return "\n".join(c[i : i + rng.randint(1, 3)])
    if kind == 2:
        s = rng.choice(lines(CJK))
        i = rng.randrange(len(s))
        return s[i : i + rng.randint(1, 20)]
    if kind == 3:
        s = rng.choice(lines(RTL) + lines(OTHER_SCRIPTS))
        i = rng.randrange(len(s))
        return s[i : i + rng.randint(1, 30)]
    if kind == 4:
        return "".join(rng.choice(EMOJI) for _ in range(rng.randint(1, 3)))
    if kind == 5:
        s = rng.choice(COMBINING)
        return rng.choice(["", "a", "x", "\u05d0", "\u0627"]) + s + rng.choice(["", "b", " ", "\u0301"])
    if kind == 6:
        return rng.choice(WHITESPACE)
    if kind == 7:
        return rng.choice(ODD)
    if kind == 8:
        return rng.choice(SPECIAL_CONTENTS)
    if kind == 9:
        return rng.choice(NUMBERS)
    if kind == 10:
        return random_sentence(rng, rng.randint(1, 8))
    # a decomposed (NFD) or compatibility-shaped variant of some text
    s = rng.choice(lines(OTHER_SCRIPTS) + lines(ENGLISH))
    i = rng.randrange(len(s))
    return unicodedata.normalize(rng.choice(["NFD", "NFC", "NFD"]), s[i : i + rng.randint(1, 25)])


def test_strings():
    rng = random.Random(SEED + 1)
    out = list(FIXED)
    out += lines(ENGLISH) + lines(CJK) + lines(RTL) + lines(OTHER_SCRIPTS) + [CODE]
    out += COMBINING + WHITESPACE + ODD + EMOJI + NUMBERS
    out += [unicodedata.normalize("NFD", s) for s in lines(OTHER_SCRIPTS) + lines(RTL)]
    while len(out) < 2750:
        n = rng.choice([1, 1, 1, 2, 2, 3, 4])
        glue = rng.choice(["", "", " ", " ", "\n", "  "])
        s = glue.join(random_fragment(rng) for _ in range(n))
        if rng.random() < 0.15:
            s = rng.choice(WHITESPACE) + s
        if rng.random() < 0.15:
            s = s + rng.choice(WHITESPACE)
        out.append(s)
    seen = set()
    unique = []
    for s in out:
        if s not in seen:
            seen.add(s)
            unique.append(s)
    return unique


# ---------------------------------------------------------------------------------------------
# tokenizers
# ---------------------------------------------------------------------------------------------


def add_openflamingo_special_tokens(tok):
    """Exactly open_flamingo/src/factory.py."""
    tok.add_special_tokens({"additional_special_tokens": ["<|endofchunk|>", "<image>"]})
    if tok.pad_token is None:
        tok.add_special_tokens({"pad_token": "<PAD>"})
    return tok


def train_bytelevel(corpus, vocab_size):
    tk = Tokenizer(models.BPE())
    tk.normalizer = normalizers.NFC()
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>", "<|padding|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tk.train_from_iterator(corpus, trainer)
    return tk


def train_sentencepiece_bpe(corpus, vocab_size, alphabet_size):
    """Vocabulary laid out like LLaMA's: <unk> <s> </s>, <0x00>..<0xFF>, then the learned pieces.
    Trained on "▁word" units and runs of "▁" (like SentencePiece with split_by_whitespace), so no
    piece crosses a word boundary but "▁▁", "▁▁▁▁" exist.  Only the `alphabet_size` most frequent
    characters are kept (removed from the training text beforehand: the trainer's own
    limit_alphabet breaks ties in hash order, which is not reproducible), so rare characters
    (emoji, most CJK) go to byte fallback."""
    counts = {}
    for line in corpus:
        for ch in line:
            counts[ch] = counts.get(ch, 0) + 1
    counts.pop(" ", None)
    keep = set(sorted(counts, key=lambda ch: (-counts[ch], ord(ch)))[:alphabet_size]) | {" "}
    corpus = ["".join(ch for ch in line if ch in keep) for line in corpus]
    tk = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tk.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=False),
            pre_tokenizers.Split(Regex("▁+(?=▁[^▁])|▁?[^▁]+|▁+"), behavior="isolated"),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<unk>", "<s>", "</s>"],
        show_progress=False,
    )
    tk.train_from_iterator(corpus, trainer)
    spec = json.loads(tk.to_str())
    ordered = sorted(spec["model"]["vocab"].items(), key=lambda kv: kv[1])
    vocab = {}
    for piece, _ in ordered[:3]:
        vocab[piece] = len(vocab)
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for piece, _ in ordered[3:]:
        assert piece not in vocab, piece
        vocab[piece] = len(vocab)
    return vocab, spec["model"]["merges"]


SPM_DECODER = {
    "type": "Sequence",
    "decoders": [
        {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
        {"type": "ByteFallback"},
        {"type": "Fuse"},
        {"type": "Strip", "content": " ", "start": 1, "stop": 0},
    ],
}


def template(single, pair, specials):
    def pieces(items, type_id):
        out = []
        for it in items:
            if it in ("A", "B"):
                out.append({"Sequence": {"id": it, "type_id": 0 if it == "A" else 1}})
            else:
                out.append({"SpecialToken": {"id": it, "type_id": type_id}})
        return out

    return {
        "type": "TemplateProcessing",
        "single": pieces(single, 0),
        "pair": pieces(pair, 1),
        "special_tokens": {t: {"id": t, "ids": [i], "tokens": [t]} for t, i in specials},
    }


def added(i, content, special=True, normalized=False, lstrip=False, rstrip=False, single_word=False):
    return {"id": i, "content": content, "single_word": single_word, "lstrip": lstrip,
            "rstrip": rstrip, "normalized": normalized, "special": special}


def spm_spec(vocab, merges, normalized_specials):
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [added(0, "<unk>", normalized=normalized_specials),
                         added(1, "<s>", normalized=normalized_specials),
                         added(2, "</s>", normalized=normalized_specials)],
        "normalizer": None,
        "pre_tokenizer": None,
        "post_processor": template(["<s>", "A"], ["<s>", "A", "<s>", "B"], [("<s>", 1)]),
        "decoder": SPM_DECODER,
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True,
                  "ignore_merges": False, "vocab": vocab, "merges": merges},
    }


def wrap(spec, **kw):
    """PreTrainedTokenizerFast around the spec, plus the OpenFlamingo tokens; returns the HF object."""
    tk = Tokenizer.from_str(json.dumps(spec))
    return add_openflamingo_special_tokens(PreTrainedTokenizerFast(tokenizer_object=tk, **kw))


def build_all(corpus):
    built = {}

    # --- GPT-NeoX-20B layout ---------------------------------------------------------------
    tk = train_bytelevel(corpus, 3000)
    spec = json.loads(tk.to_str())
    spec["post_processor"] = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    spec["decoder"] = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    for a in spec["added_tokens"]:
        a["normalized"] = False
    n = len(spec["model"]["vocab"])
    spec["added_tokens"].append(added(n, "  ", special=False, normalized=True))
    neox = wrap(spec, bos_token="<|endoftext|>", eos_token="<|endoftext|>", unk_token="<|endoftext|>")

    def neox_legacy_format(d):
        d["model"]["merges"] = [" ".join(m) for m in d["model"]["merges"]]
        for k in ("pre_tokenizer", "post_processor", "decoder"):
            d[k].pop("use_regex", None)
        d["model"].pop("byte_fallback", None)
        d["model"].pop("ignore_merges", None)
        return d

    built["neox_bpe"] = (neox, neox_legacy_format)

    # --- LLaMA, 2023 (legacy) and transformers 5 (Metaspace) -------------------------------
    vocab, merges = train_sentencepiece_bpe(corpus, 2200, 160)
    legacy = spm_spec(vocab, merges, normalized_specials=True)
    legacy["normalizer"] = {"type": "Sequence", "normalizers": [
        {"type": "Prepend", "prepend": "▁"},
        {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]}
    built["llama_legacy"] = (wrap(legacy, bos_token="<s>", eos_token="</s>", unk_token="<unk>"), None)

    meta = spm_spec(vocab, merges, normalized_specials=False)
    meta["pre_tokenizer"] = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": False}
    built["llama_metaspace"] = (wrap(meta, bos_token="<s>", eos_token="</s>", unk_token="<unk>"), None)

    # --- byte-level with every flag ----------------------------------------------------------
    tk = train_bytelevel(corpus, 1500)
    spec = json.loads(tk.to_str())
    for a in spec["added_tokens"]:
        a["normalized"] = False
    spec["normalizer"] = {"type": "Sequence", "normalizers": [{"type": "NFC"}]}
    spec["pre_tokenizer"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True}
    spec["post_processor"] = template(["<|endoftext|>", "A", "<|endoftext|>"], ["<|endoftext|>", "A", "<|endoftext|>", "B", "<|endoftext|>"], [("<|endoftext|>", 0)])
    spec["decoder"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}
    spec["model"]["ignore_merges"] = True
    n = len(spec["model"]["vocab"])
    extra = [
        ("[MASK]", dict(lstrip=True)),
        ("<R>", dict(rstrip=True)),
        ("<both>", dict(lstrip=True, rstrip=True, special=False)),
        ("word", dict(single_word=True, special=False, normalized=True)),
        ("New York", dict(special=False, normalized=True)),
        ("<im", dict(special=False)),
        ("A\u030a", dict(special=False, normalized=True)),
        ("e\u0301x", dict(special=False, normalized=False)),
        ("<|bos|>", dict(special=True, normalized=True, single_word=True, lstrip=True)),
    ]
    for content, kw in extra:
        spec["added_tokens"].append(added(n, content, **kw))
        n += 1
    built["bytelevel_flags"] = (wrap(spec, bos_token="<|endoftext|>", eos_token="<|endoftext|>"), None)

    # --- Metaspace, oldest serialisation, no byte fallback -----------------------------------
    vocab2, merges2 = train_sentencepiece_bpe(corpus, 1500, 600)
    vocab2 = {k: v for k, v in vocab2.items() if not (k.startswith("<0x") and len(k) == 6)}
    # re-number densely after dropping the byte pieces
    order = sorted(vocab2.items(), key=lambda kv: kv[1])
    vocab2 = {k: i for i, (k, _) in enumerate(order)}
    ms = spm_spec(vocab2, merges2, normalized_specials=False)
    ms["model"]["byte_fallback"] = False
    ms["model"]["fuse_unk"] = False
    ms["pre_tokenizer"] = {"type": "Metaspace", "replacement": "▁", "add_prefix_space": True}
    ms["decoder"] = {"type": "Metaspace", "replacement": "▁", "add_prefix_space": True}
    ms["post_processor"] = template(["<s>", "A", "</s>"], ["<s>", "A", "</s>", "B", "</s>"], [("<s>", 1), ("</s>", 2)])
    n = len(vocab2)
    for content, kw in [("[MASK]", dict(lstrip=True, rstrip=True)), ("word", dict(single_word=True, special=False)),
                        ("<R>", dict(rstrip=True, normalized=True)), ("New York", dict(special=False, normalized=True))]:
        ms["added_tokens"].append(added(n, content, **kw))
        n += 1
    built["metaspace_flags"] = (wrap(ms, bos_token="<s>", eos_token="</s>", unk_token="<unk>"), None)
    return built


# ---------------------------------------------------------------------------------------------
# goldens
# ---------------------------------------------------------------------------------------------


ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz+/"


def pack_ids(ids, width):
    """Ids as fixed-width base-64 digits (most significant first): 2 characters per id instead of
    about 5 in a JSON array."""
    out = []
    for i in ids:
        assert 0 <= i < 64**width
        out.append("".join(ALPHABET[(i >> (6 * (width - 1 - k))) & 63] for k in range(width)))
    return "".join(out)


def pack_lengths(lengths):
    """Stream chunk lengths: one base-64 digit each when < 62, "~" + 2 digits otherwise, "!" for
    HF's Invalid prefix error (always last)."""
    out = []
    for n in lengths:
        if n < 0:
            out.append("!")
        elif n < 62:
            out.append(ALPHABET[n])
        else:
            assert n < 4096
            out.append("~" + ALPHABET[n >> 6] + ALPHABET[n & 63])
    return "".join(out)


def relative(s, t):
    """t as an edit of s when that is shorter: a list of literal strings and [i, j] pairs, the
    pairs standing for s[i:j] (indices in code points)."""
    ops = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, s, t, autojunk=False).get_opcodes():
        if tag == "equal" and i2 - i1 > 6:
            ops.append([i1, i2])
        elif j2 > j1:
            if ops and isinstance(ops[-1], str):
                ops[-1] += t[j1:j2]
            else:
                ops.append(t[j1:j2])
    assert "".join(o if isinstance(o, str) else s[o[0] : o[1]] for o in ops) == t
    packed = json.dumps(ops, ensure_ascii=False, separators=(",", ":"))
    return ops if len(packed) < len(json.dumps(t, ensure_ascii=False)) else t


def stream_lengths(tk, ids, skip):
    ds = DecodeStream(skip_special_tokens=skip)
    out = []
    for i in ids:
        try:
            chunk = ds.step(tk, i)
        except Exception as e:  # HF's "Invalid prefix": decoding the new id rewrote emitted text
            assert "Invalid prefix" in str(e), e
            out.append(-1)
            break
        out.append(0 if chunk is None else len(chunk.encode("utf-8")))
    return out


def goldens(name, hf, tk, rel_path, strings, rng):
    """hf: transformers tokenizer, tk: tokenizers.Tokenizer loaded from the written file."""
    empty_a = tk.encode("", add_special_tokens=True).ids
    # prefix/suffix of the post-processor for a single sequence: encode a lone "a"
    probe_b = tk.encode("a", add_special_tokens=False).ids
    probe_a = tk.encode("a", add_special_tokens=True).ids
    k = next(i for i in range(len(probe_a)) if probe_a[i : i + len(probe_b)] == probe_b)
    prefix, suffix = probe_a[:k], probe_a[k + len(probe_b) :]
    assert empty_a == prefix + suffix
    vocab_size = tk.get_vocab_size(with_added_tokens=True)
    assert vocab_size == len(hf)
    width = 2 if vocab_size <= 4096 else 3
    # what decoding adds around the text (e.g. "<s> " ... "</s>"), from the same probe
    frames = {}
    for key, skip in (("d", False), ("k", True)):
        text = tk.decode(probe_a, skip_special_tokens=skip)
        assert text.count("a") == 1, text
        frames[key] = text.split("a")
    meta = {"tokenizer": rel_path, "vocab_size": vocab_size, "prefix": prefix, "suffix": suffix,
            "strings": len(strings), "id_width": width, "frames": frames}
    rows = [json.dumps(meta, ensure_ascii=False)]
    n_ids = 0
    for index, s in enumerate(strings):
        a = hf.encode(s, add_special_tokens=True)
        b = hf.encode(s, add_special_tokens=False)
        assert a == tk.encode(s, add_special_tokens=True).ids, (name, s)
        assert b == tk.encode(s, add_special_tokens=False).ids, (name, s)
        d = hf.decode(a, skip_special_tokens=False)
        kk = hf.decode(a, skip_special_tokens=True)
        assert d == tk.decode(a, skip_special_tokens=False), (name, s)
        assert kk == tk.decode(a, skip_special_tokens=True), (name, s)
        row = {"b": pack_ids(b, width)}
        if a != prefix + b + suffix:
            row["a"] = pack_ids(a, width)
        for key, text in (("d", d), ("k", kk)):
            head, tail = frames[key]
            if text.startswith(head) and text.endswith(tail) and len(text) >= len(head) + len(tail):
                core = text[len(head) : len(text) - len(tail)]
                if core != s:
                    row[key] = relative(s, core)
            else:
                row[key.upper()] = relative(s, text)
        if index % 3 == 0:
            row["l"] = pack_lengths(stream_lengths(tk, a, False))
        n_ids += len(b)
        rows.append(json.dumps(row, ensure_ascii=False, separators=(",", ":")))
    # random id sequences: everything in the vocabulary, biased to byte tokens and specials
    ids_all = list(range(vocab_size))
    special_ids = sorted(i for i, t in tk.get_added_tokens_decoder().items() if t.special)
    byte_ids = [tk.token_to_id(f"<0x{b:02X}>") for b in range(256)]
    byte_ids = [i for i in byte_ids if i is not None]
    for _ in range(300):
        n = rng.randint(1, 12)
        seq = []
        for _ in range(n):
            r = rng.random()
            if r < 0.3 and byte_ids:
                seq.append(rng.choice(byte_ids))
            elif r < 0.45:
                seq.append(rng.choice(special_ids))
            else:
                seq.append(rng.choice(ids_all))
        d = hf.decode(seq, skip_special_tokens=False)
        kk = hf.decode(seq, skip_special_tokens=True)
        assert d == tk.decode(seq, skip_special_tokens=False) and kk == tk.decode(seq, skip_special_tokens=True)
        rows.append(json.dumps({"r": pack_ids(seq, width), "d": d, "k": kk,
                                "l": pack_lengths(stream_lengths(tk, seq, False)),
                                "ls": pack_lengths(stream_lengths(tk, seq, True))},
                               ensure_ascii=False, separators=(",", ":")))
    (OUT / f"{name}.golden.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return n_ids


def unicode_tables():
    """ByteLevel regex classes per code point and NFC pairs, both straight from HF."""
    pt = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)

    def cls(cp):
        if cp == 0x20:
            return "W"
        r = [s for s, _ in pt.pre_tokenize_str("a" + chr(cp) * 2 + "1")]
        if len(r) == 2 and r[1] == "1":
            return "L"
        if len(r) == 2:
            return "N"
        if len(r) == 3:
            return "O"
        assert len(r) == 4, (cp, r)
        return "W"

    runs = []
    for cp in range(0x110000):
        c = "O" if 0xD800 <= cp < 0xE000 else cls(cp)
        if not runs or runs[-1][1] != c:
            runs.append([cp, c])
    (OUT / "classes.json").write_text(json.dumps(runs, separators=(",", ":")) + "\n")

    nfc = normalizers.NFC()
    seconds = set()
    candidates = []
    for cp in range(0x110000):
        if 0xD800 <= cp < 0xE000:
            continue
        c = chr(cp)
        d = unicodedata.decomposition(c)
        if d and not d.startswith("<"):
            parts = [int(x, 16) for x in d.split()]
            if len(parts) == 2:
                seconds.add(parts[1])
            candidates.append(cp)
        elif unicodedata.combining(c):
            candidates.append(cp)
    candidates = sorted(set(candidates) | seconds)
    # one line per code point c: [c, NFC(c), NFD(c), NFC(NFD(c)), NFC("a"+c), NFC(c+U+0301),
    # NFC(c+U+0301+U+0316)] where 0 stands for "unchanged by HF's NFC" and NFD(c) is 0 when it
    # equals c; the Swift test rebuilds the inputs
    rows = []
    for cp in candidates:
        if 0xAC00 <= cp <= 0xD7A3 and cp % 37:
            continue  # Hangul syllables are algorithmic: a sample is enough
        c = chr(cp)
        nfd = unicodedata.normalize("NFD", c)
        row = [cp]
        for s_in in (c, nfd, "a" + c, c + "\u0301", c + "\u0301\u0316"):
            o = nfc.normalize_str(s_in)
            row.append(0 if o == s_in else o)
        row.insert(2, 0 if nfd == c else nfd)
        rows.append(json.dumps(row, ensure_ascii=False, separators=(",", ":")))
    for s_in in ["\u1100\u1161\u11a8", "\u1100\u1161", "\uac00\u11a8", "A\u0301\u0328", "\U0001d15e\U0001d165"]:
        o = nfc.normalize_str(s_in)
        rows.append(json.dumps([s_in, 0 if o == s_in else o], ensure_ascii=False, separators=(",", ":")))
    (OUT / "nfc.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return len(runs), len(rows)


def main():
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    corpus = training_corpus()
    strings = test_strings()
    (OUT / "strings.jsonl").write_text("\n".join(json.dumps(s, ensure_ascii=False) for s in strings) + "\n", encoding="utf-8")
    rng = random.Random(SEED + 2)
    report = {}
    for name, (hf, legacy) in build_all(corpus).items():
        spec = json.loads(hf.backend_tokenizer.to_str())
        if legacy:
            spec = legacy(spec)
        path = OUT / f"{name}.json"
        path.write_text(json.dumps(spec, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")
        tk = Tokenizer.from_file(str(path))
        report[name] = goldens(name, hf, tk, f"{name}.json", strings, rng)
    for fixture in ("mpt_tiny", "llama_tiny"):
        path = REPO / "Tests" / "Fixtures" / fixture / "tokenizer.json"
        tk = Tokenizer.from_file(str(path))
        hf = PreTrainedTokenizerFast(tokenizer_file=str(path))
        report[fixture] = goldens(fixture, hf, tk, f"../{fixture}/tokenizer.json", strings, rng)
    n_runs, n_nfc = unicode_tables()
    versions = {"tokenizers": tokenizers.__version__, "transformers": transformers.__version__,
                "python": sys.version.split()[0], "unicodedata": unicodedata.unidata_version}
    (OUT / "MANIFEST.json").write_text(json.dumps({"generator": "tools/reference/make_tokenizer_goldens.py",
                                                   "versions": versions, "strings": len(strings),
                                                   "ids_per_tokenizer": report, "classes_runs": n_runs,
                                                   "nfc_cases": n_nfc}, indent=2, sort_keys=True) + "\n")
    total = sum(p.stat().st_size for p in OUT.iterdir())
    print(f"{len(strings)} strings, tokenizers {sorted(report)}, {total / 1e6:.2f} MB in {OUT.relative_to(REPO)}")


if __name__ == "__main__":
    main()
