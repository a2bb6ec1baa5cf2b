"""Strings that stress GPT-2's pre-tokenizer and byte-level BPE."""

import random

_rng = random.Random(1234)

EDGE_CASES: list[str] = [
    "",
    "a",
    " ",
    "Hello world",
    "hello  world   with    runs",
    # contractions are lower-case only in GPT-2's pattern
    "don't can't I'm we've they're you'll he'd it's",
    "DON'T CAN'T I'M WE'VE THEY'RE YOU'LL HE'D IT'S",
    "'S 's 'T 't 'LL 'll",
    "rock 'n' roll, 'twas ''quoted''",
    # whitespace runs, CRLF, tabs, trailing/leading space
    "   leading spaces",
    "trailing spaces   ",
    "\n",
    "\n\n\n",
    "line one\nline two\n\n  indented\n",
    "windows\r\nline\r\nendings\r\n",
    "tab\tseparated\t\tvalues\t",
    " \t \n \r\n x",
    "a \n b \n\n c",
    # Unicode whitespace and the ASCII separators that are not \s
    "non\u00a0breaking\u00a0space",
    "".join(chr(c) for c in range(0x2000, 0x200B)) + "x",
    "ideographic\u3000space\u3000",
    "line\u2028separator\u2029para",
    "nel\u0085char",
    "\x1c\x1d\x1e\x1f group separators \x1f",
    "".join(chr(c) for c in range(0x20)),
    "null\x00byte and \x7f delete",
    # emoji, ZWJ sequences, flags, skin tones, variation selectors
    "I love 🐍 and 🦀!",
    "👨‍👩‍👧‍👦 family",
    "🇫🇷🇯🇵🇺🇸 flags",
    "👍🏽 thumbs ✌️ peace",
    # scripts
    "日本語のテキストです。東京",
    "中文字符测试，标点符号！",
    "한국어 텍스트",
    "مرحبا بالعالم",
    "שלום עולם",
    "Привет, мир! Ёлка",
    "Ελληνικά γράμματα",
    "हिन्दी पाठ",
    "ไทยภาษา",
    # combining marks, precomposed vs decomposed
    "cafe\u0301 café",
    "Z\u0351\u0364\u036b\u0353a\u0306\u0308lgo",
    # digits
    "1234567890",
    "3.14159265358979323846264338327950288419716939937510",
    "pay $1,000,000.00 now",
    "٠١٢٣٤٥٦٧٨٩ Arabic-Indic digits",
    "१२३ Devanagari ५ digits",
    "Roman Ⅻ and ½ ¾ ² superscripts",
    "mixed123abc456",
    # special token text embedded (as ordinary text)
    "before<|endoftext|>after",
    "<|endoftext|>",
    "<|endoftext|><|endoftext|>",
    "almost <|endoftext| token <|endoftext",
    # punctuation and code
    "def f(x):\n    return x**2  # square\n",
    '{"key": [1, 2, 3], "nested": {"a": null}}',
    "!!!???...,,,;;;:::---___",
    "http://example.com/path?q=1&r=2#frag",
    "C:\\Users\\name\\file.txt",
    # long runs
    "a" * 1000,
    "ab" * 500,
    " " * 300,
    "\n" * 100 + "x",
    "supercalifragilisticexpialidocious" * 20,
    "".join(_rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(3000)),
    "".join(_rng.choice("あいうえおかきくけこ漢字") for _ in range(500)),
    "".join(chr(_rng.randrange(0x20, 0x3000)) for _ in range(2000)),
]

#: Strings with surrogate code points; tiktoken replaces lone ones by U+FFFD.
SURROGATE_CASES: list[str] = [
    "lone \ud800 high",
    "lone \udfff low",
    "pair \ud83d\ude00 as two code units",
    "\udc80\udcff",
]
