#!/usr/bin/env python3
"""Write tests/fixtures/tokenizer_ids.json: CLIP's own token ids for a set of prompts.

The ids come from openai/CLIP's `simple_tokenizer.py` itself (shipped by the clip-anytorch
wheel with its copy of the BPE vocabulary), padded and truncated the way `clip.tokenize(...,
truncate=True)` does: BOS … EOS, zeros after, and a prompt over the context length cut to its
first context_length ids with EOS written over the last one. tests/tokenizer.rs checks that
ratlip's tokenizer (assets/tokenizer.json.gz, tools/reference/build_tokenizer.py) gives the
same ids.

Prompts whose cleanup CLIP does with something a fixed-replacement normalizer cannot express
carry a "known_difference" with the reason; the Rust test reports them instead of checking.

    pip install --no-deps clip-anytorch==2.6.0 ftfy==6.3.1 regex wcwidth
    python tools/reference/tokenizer_fixture.py

clip/__init__.py needs torch and pkg_resources, so simple_tokenizer.py is loaded by path.
"""

import hashlib
import importlib.util
import json
import os
import sys

import ftfy
import regex

CONTEXT_LENGTH = 77
VOCAB_SHA256 = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(ROOT, "tests", "fixtures", "tokenizer_ids.json")

LONG = (
    "A highly detailed oil painting of a small yellow warbler perched on a mossy branch in an "
    "old forest at dawn, soft golden light filtering through the leaves, mist rising from the "
    "river below, delicate feathers with olive streaks, a tiny black eye catching the light, "
    "painted in the style of a nineteenth century naturalist's field guide, muted greens and "
    "browns, fine brush strokes, a quiet and peaceful mood, trending on an imaginary gallery wall."
)

# (prompt, what it exercises)
PROMPTS = [
    ("a photo of a cat", "reference ids from PLATFORM.md"),
    ("He is young, receding hairline.", "reference ids from PLATFORM.md"),
    ("this bird has a red crown, white belly and a short pointed black bill", "CUB-style caption"),
    ("A man riding a wave on top of a surfboard.", "COCO-style caption, capitals"),
    ("3 dogs, 12 cats and 1,000,000 birds; pi is 3.14159 and 2nd place wins 50%", "digits split one by one"),
    ("wow!!! really?? yes... (maybe) [or] {not} <tag> @home #tag $5 ^_^ a+b=c ~x~ `q` | / \\", "punctuation runs"),
    ("it's, they're, we've, I'm, you'll, he'd, don't, O'NEIL'S", "contractions"),
    ("café crème brûlée, naïve façade, Ångström in São Paulo, Œuvre, straße", "precomposed accents"),
    ("cafe\u0301 cre\u0300me nai\u0308ve", "decomposed accents: NFC"),
    ("一只猫坐在窗台上", "Chinese"),
    ("東京タワーの写真、夜景", "Japanese"),
    ("고양이 사진", "Korean"),
    ("a 🐱 wearing a 🎩, thumbs up 👍🏽 and a family 👨\u200d👩\u200d👧", "emoji, skin tone, ZWJ"),
    ("\u201cHello,\u201d she said, \u2018it\u2019s fine\u2019 \u201fok\u201d \u02bcx", "curly quotes: ftfy uncurl_quotes"),
    ("Tom &amp; Jerry &lt;3 &quot;quoted&quot; &#39;single&#39; caf&eacute; &nbsp;x &mdash; y &hellip;", "entities: html.unescape"),
    ("nested &amp;amp; and &amp;lt;b&amp;gt; and &AMP; &EACUTE;T&Eacute; AT&T R&D fish&chips", "entities: nesting, capitals, non-entities"),
    ("it&#x2019;s &#8220;ok&#8221; &#146;90s &#x27;a&#X27; &#0039;b&#39 x&not y &copy 2024", "numeric and legacy entities"),
    ("\ufb01sh and \ufb02owers, \ufb03ne \ufb00 \ufb06 \u0133 \u01c6", "ligatures: ftfy fix_latin_ligatures"),
    ("\uff2c\uff2f\uff35\uff24\u3000\uff2e\uff2f\uff29\uff33\uff25\uff33 \uff41\uff42\uff43\uff11\uff12\uff13\uff01", "fullwidth letters: ftfy fix_character_width"),
    ("\uff8a\uff9f\uff9d \uff76\uff9e\uff97\uff7d \uffe5100", "halfwidth katakana (+ NFC of the sound marks)"),
    ("  a   red\n\n\tcar \r\n on\u00a0the\u2003road \u3000 ", "whitespace runs, tabs, CRLF, no-break and ideographic spaces"),
    ("\x93smart\x94 quotes from cp1252 \x85 \x96 dash", "C1 controls: ftfy fix_c1_controls"),
    ("\x1b[31mred\x1b[0m text with bell\x07 and bom\ufeff and zero\u200bwidth soft\u00adhyphen", "terminal escapes, control characters"),
    ("ΟΔΟΣ ΣΟΦΟΣ, Σ alone and ΑΣ.", "Greek capitals: final sigma in str.lower()"),
    ("İstanbul, DŽungla, ǅ", "special lower-casing"),
    ("E=mc² and ½ cup, ™ symbol, Ⅻ o'clock, ٣ and ५", "superscripts, fractions, other digits: no NFKC"),
    ("قطة على السجادة، חתול, बिल्ली", "Arabic, Hebrew, Devanagari"),
    ("4K HDR 1080p photo, f/1.8, 50mm, ISO-100", "mixed letters and digits"),
    ("a prompt with <|endoftext|> and <|STARTOFTEXT|> inside", "special tokens typed in the text"),
    ("", "empty prompt: BOS EOS"),
    ("   \n\t  ", "only whitespace"),
    (" ".join(["a"] * 75), "exactly 77 ids with BOS/EOS: not truncated"),
    (" ".join(["a"] * 76), "78 ids: truncated by one"),
    (LONG, "long prompt: truncated, EOS kept last"),
    (LONG + " " + LONG, "very long prompt"),
    ("cafÃ© au lait and donâ€™t", "mojibake"),
    ("x < y and it&rsquo;s", "entity on a line with '<'"),
    ("set &notin; A, &alpha;&beta; &rarr; &check;", "named entities outside the decoded set"),
]

KNOWN_DIFFERENCES = {
    "cafÃ© au lait and donâ€™t":
        "CLIP's ftfy.fix_text repairs mojibake (UTF-8 read as Windows-1252) with a heuristic over "
        "the whole line; no fixed string replacement can express it",
    "x < y and it&rsquo;s":
        "ftfy unescapes HTML (and then straightens the quote it produced) only on lines without "
        "'<'; html.unescape afterwards leaves a curly quote there. Normalizers cannot look at the "
        "whole line, so ratlip always takes the line-without-'<' path",
    "set &notin; A, &alpha;&beta; &rarr; &check;":
        "ratlip decodes only the named entities for ASCII, Latin-1, general punctuation, €, "
        "™ and minus (each entity is one normalizer pass); CLIP decodes all of HTML5's",
}


def load_clip_tokenizer():
    spec = importlib.util.find_spec("clip")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("pip install --no-deps clip-anytorch==2.6.0 ftfy==6.3.1 regex wcwidth")
    pkg = spec.submodule_search_locations[0]
    mod_spec = importlib.util.spec_from_file_location("clip_simple_tokenizer", os.path.join(pkg, "simple_tokenizer.py"))
    mod = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(mod)
    vocab = mod.default_bpe()
    digest = hashlib.sha256(open(vocab, "rb").read()).hexdigest()
    if digest != VOCAB_SHA256:
        sys.exit(f"{vocab}: sha256 {digest} is not CLIP's bpe_simple_vocab_16e6.txt.gz")
    return mod.SimpleTokenizer()


def tokenize(tok, text, context_length=CONTEXT_LENGTH):
    """clip.tokenize(text, context_length, truncate=True)[0], without torch."""
    sot, eot = tok.encoder["<|startoftext|>"], tok.encoder["<|endoftext|>"]
    full = [sot] + tok.encode(text) + [eot]
    ids = full[:context_length]
    if len(full) > context_length:
        ids[-1] = eot
    return full, ids + [0] * (context_length - len(ids))


def main():
    tok = load_clip_tokenizer()
    assert len(PROMPTS) == len({p for p, _ in PROMPTS}), "duplicate prompt"
    assert set(KNOWN_DIFFERENCES) <= {p for p, _ in PROMPTS}
    cases = []
    for prompt, about in PROMPTS:
        full, ids = tokenize(tok, prompt)
        cases.append({
            "prompt": prompt,
            "about": about,
            "ids": ids,
            "original_len": len(full),
            "truncated": len(full) > CONTEXT_LENGTH,
            "known_difference": KNOWN_DIFFERENCES.get(prompt),
        })
    doc = {
        "source": "openai/CLIP simple_tokenizer.py (clip-anytorch 2.6.0), ftfy "
                  f"{ftfy.__version__}, regex {regex.__version__}; clip.tokenize(truncate=True) padding",
        "context_length": CONTEXT_LENGTH,
        "bos": tok.encoder["<|startoftext|>"],
        "eos": tok.encoder["<|endoftext|>"],
        "cases": cases,
    }
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=True, indent=1)
        f.write("\n")
    checks = {
        "a photo of a cat": [49406, 320, 1125, 539, 320, 2368, 49407],
        "He is young, receding hairline.": [49406, 797, 533, 1888, 267, 1890, 796, 4658, 1148, 269, 49407],
    }
    for c in cases:
        if c["prompt"] in checks:
            want = checks[c["prompt"]]
            assert c["ids"][: len(want)] == want and not any(c["ids"][len(want):]), c
    print(f"{OUT}: {len(cases)} prompts, {sum(c['truncated'] for c in cases)} truncated, "
          f"{sum(bool(c['known_difference']) for c in cases)} known differences")


if __name__ == "__main__":
    main()
