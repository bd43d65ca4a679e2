#!/usr/bin/env python3
"""Build assets/tokenizer.json.gz: CLIP's tokenizer as a Hugging Face `tokenizers` JSON.

CLIP's own tokenizer (openai/CLIP `clip/simple_tokenizer.py`) is Python: ftfy + html cleanup,
lower-casing, a regex split and byte-level BPE over `bpe_simple_vocab_16e6.txt.gz`. ratlip runs
the same tokenizer from Rust through the `tokenizers` crate, so this script writes that crate's
JSON format. The layout follows openai/clip-vit-base-patch32's tokenizer.json (NFC, `\\s+` → " ",
lowercase; Split on CLIP's regex + ByteLevel; BPE with `</w>`; BOS 49406 / EOS 49407). Theirs
skips CLIP's ftfy/html cleanup; here it is expressed as Replace normalizers wherever a fixed
string replacement can say it (see `cleanup_normalizers`), so more prompts tokenize exactly as
CLIP does. tests/fixtures/tokenizer_ids.json (tools/reference/tokenizer_fixture.py) checks it.

Reproducible: the vocabulary is checked by sha256, ftfy's tables come from a pinned ftfy, and
the gzip header carries no name or time.

    pip download --no-deps open-clip-torch==3.3.0 -d /tmp/oc
    unzip -j /tmp/oc/open_clip_torch-3.3.0-py3-none-any.whl open_clip/bpe_simple_vocab_16e6.txt.gz -d /tmp/oc
    pip install ftfy==6.3.1
    python tools/reference/build_tokenizer.py --vocab /tmp/oc/bpe_simple_vocab_16e6.txt.gz

Without --vocab the script runs the `pip download` itself. `--check` (needs `pip install
tokenizers`) loads the result with Hugging Face's Python tokenizers and encodes two prompts.
"""

import argparse
import gzip
import hashlib
import html
import html.entities
import io
import json
import os
import subprocess
import sys
import tempfile
import zipfile

VOCAB_NAME = "bpe_simple_vocab_16e6.txt.gz"
VOCAB_SHA256 = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"
WHEEL = "open-clip-torch==3.3.0"
FTFY_VERSION = "6.3.1"

N_MERGES = 49152 - 256 - 2  # CLIP reads header + 48,894 merge lines
BOS, EOS = "<|startoftext|>", "<|endoftext|>"
BOS_ID, EOS_ID, VOCAB_SIZE = 49406, 49407, 49408

# CLIP's pre-tokenizer regex (simple_tokenizer.py). CLIP compiles it with IGNORECASE, which
# changes nothing on the lower-cased text it is applied to.
CLIP_PATTERN = (
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def bytes_to_unicode():
    """CLIP's (and GPT-2's) byte → printable character table; ByteLevel uses the same one."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def fetch_vocab(dest_dir):
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", WHEEL, "-d", dest_dir],
        check=True,
    )
    wheel = next(f for f in os.listdir(dest_dir) if f.endswith(".whl"))
    with zipfile.ZipFile(os.path.join(dest_dir, wheel)) as z:
        data = z.read("open_clip/" + VOCAB_NAME)
    path = os.path.join(dest_dir, VOCAB_NAME)
    with open(path, "wb") as f:
        f.write(data)
    return path


def load_vocab_and_merges(path):
    raw = open(path, "rb").read()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != VOCAB_SHA256:
        sys.exit(f"{path}: sha256 {digest}, expected {VOCAB_SHA256} (not CLIP's {VOCAB_NAME}?)")
    lines = gzip.decompress(raw).decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1 : N_MERGES + 1]]
    assert len(merges) == N_MERGES and all(len(m) == 2 for m in merges)
    byte_chars = list(bytes_to_unicode().values())
    tokens = byte_chars + [c + "</w>" for c in byte_chars] + ["".join(m) for m in merges] + [BOS, EOS]
    assert len(tokens) == VOCAB_SIZE and len(set(tokens)) == VOCAB_SIZE
    vocab = {t: i for i, t in enumerate(tokens)}
    assert vocab[BOS] == BOS_ID and vocab[EOS] == EOS_ID
    return vocab, merges


# --- CLIP's text cleanup as Replace normalizers ---------------------------------------------
#
# CLIP runs, before lower-casing:  ftfy.fix_text(text); html.unescape twice; whitespace → " ".
# ftfy.fix_text (6.x, per line, repeated until nothing changes): unescape_html (only on lines
# without "<"), fix_encoding (mojibake), fix_c1_controls, fix_latin_ligatures,
# fix_character_width, uncurl_quotes, fix_line_breaks, fix_surrogates, remove_terminal_escapes,
# remove_control_chars, NFC. Every step except fix_encoding (a heuristic over the whole line)
# is a per-character table or a regex with a fixed replacement, so it becomes Replace
# normalizers, in ftfy's order. HTML entities are bounded to the characters that captions
# actually escape, to keep the normalizer list short.


def _hex_alt(n):
    """Regex for n in hex with either letter case, e.g. 0x201c → 201[cC]."""
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in f"{n:x}")


def _entity_value_kept(v):
    """Named entities we decode: ASCII, Latin-1, general punctuation, €, ™, minus."""
    if len(v) != 1:
        return False
    o = ord(v)
    return 0x20 <= o < 0x7F or 0xA0 <= o <= 0xFF or 0x2010 <= o <= 0x203A or o in (0x20AC, 0x2122, 0x2212)


def replace(pattern, content, regex=False):
    return {"type": "Replace", "pattern": {"Regex" if regex else "String": pattern}, "content": content}


def entity_normalizers():
    out = []
    # `&amp;` first, nested to any depth (ftfy repeats until stable), with and without ";"
    # (html.unescape accepts legacy names without it) and as `&#38;` / `&#x26;`: every other
    # entity may hide behind one.
    out.append(replace(r"&(?:(?:amp|AMP);?|#0*38(?![0-9]);?|#[xX]0*26(?![0-9a-fA-F]);?)+", "&", regex=True))

    # Numeric references (html.unescape; ftfy's unescape_html defers to it) to ASCII
    # punctuation, no-break space and typographic punctuation, including the Windows-1252
    # numbers (&#146; → ’) that html.unescape maps like browsers do.
    invalid = html._invalid_charrefs  # the table html.unescape uses for &#128;..&#159; etc.
    targets = [chr(c) for c in range(0x20, 0x7F) if not chr(c).isalnum() and c != 0x26]
    targets += ["\u00a0", "\u2013", "\u2014", "\u2018", "\u2019", "\u201c", "\u201d", "\u2022", "\u2026"]
    for t in targets:
        codes = [ord(t)] + sorted(k for k, v in invalid.items() if v == t and 0x80 <= k <= 0x9F)
        dec = "|".join(str(c) for c in codes)
        hexs = "|".join(_hex_alt(c) for c in codes)
        out.append(replace(f"&#(?:0*(?:{dec})(?![0-9])|[xX]0*(?:{hexs})(?![0-9a-fA-F]));?", t, regex=True))

    # Named references with ";" (HTML5's list, plus the all-caps spellings ftfy accepts, e.g.
    # &EACUTE; → É), grouped by the character they stand for.
    by_value = {}
    for name, value in html.entities.html5.items():
        if not name.endswith(";") or name in ("amp;", "AMP;") or not _entity_value_kept(value):
            continue
        by_value.setdefault(value, []).append(name[:-1])
        if name == name.lower():
            upper = "&" + name.upper()
            if html.unescape(upper) == upper:  # ftfy's rule for its all-caps extras
                by_value.setdefault(value.upper(), []).append(name[:-1].upper())
    for value in sorted(by_value):
        names = sorted(set(by_value[value]), key=lambda n: (-len(n), n))
        out.append(replace("&(?:" + "|".join(names) + ");", value, regex=True))

    # Legacy names that html.unescape also takes without ";" (&amp, &copy, &not ...). After
    # the ";" forms, longest first, since html.unescape decodes the longest known prefix.
    # html.unescape decodes such a prefix only when the whole name is not an entity itself
    # (&notin; is ∉, not ¬in;), hence the look-ahead over the longer names.
    html5 = html.entities.html5
    legacy = sorted((n for n in html5 if not n.endswith(";") and n not in ("amp", "AMP")), key=lambda n: (-len(n), n))
    for name in legacy:
        longer = sorted({k[len(name) : -1] for k in html5 if k.endswith(";") and k.startswith(name) and len(k) > len(name) + 1})
        guard = f"(?!(?:{'|'.join(longer)});)" if longer else ""
        out.append(replace(f"&{name}{guard};?", html5[name], regex=True))
    return out


def cleanup_normalizers():
    import ftfy
    from ftfy import chardata, fixes

    if ftfy.__version__ != FTFY_VERSION:
        sys.exit(f"ftfy {ftfy.__version__} found; pip install ftfy=={FTFY_VERSION} (its tables go into the file)")

    out = entity_normalizers()
    # fix_c1_controls: stray C1 controls read as Windows-1252 (\x93 → “, \x85 → …).
    for c in range(0x80, 0xA0):
        fixed = fixes.fix_c1_controls(chr(c))
        if fixed != chr(c):
            out.append(replace(chr(c), fixed))
    # fix_latin_ligatures, fix_character_width: per-character tables.
    for table in (chardata.LIGATURES, chardata.WIDTH_MAP):
        for code, value in sorted(table.items()):
            out.append(replace(chr(code), value))
    # uncurl_quotes
    out.append(replace(chardata.SINGLE_QUOTE_RE.pattern, "'", regex=True))
    out.append(replace(chardata.DOUBLE_QUOTE_RE.pattern, '"', regex=True))
    # fix_line_breaks changes only whitespace, which `\s+` → " " covers; fix_surrogates cannot
    # apply to Rust strings. remove_terminal_escapes:
    out.append(replace(r"\x1b\[(?:\d|;)*[a-zA-Z]", "", regex=True))
    # remove_control_chars
    codes = sorted(chardata.CONTROL_CHARS)
    ranges, start = [], codes[0]
    for a, b in zip(codes, codes[1:] + [None]):
        if b != a + 1:
            ranges.append((start, a))
            start = b
    cls = "".join(f"\\x{{{a:x}}}" if a == b else f"\\x{{{a:x}}}-\\x{{{b:x}}}" for a, b in ranges)
    out.append(replace(f"[{cls}]", "", regex=True))
    return out


def build(vocab, merges):
    normalizers = cleanup_normalizers() + [
        {"type": "NFC"},
        replace(r"\s+", " ", regex=True),
        # Python's str.lower() writes a word-final capital sigma as ς; a per-character
        # lowercase cannot see the context, so mark those first.
        replace(r"(?<=[\p{Ll}\p{Lu}\p{Lt}])Σ(?![\p{Ll}\p{Lu}\p{Lt}])", "ς", regex=True),
        {"type": "Lowercase"},
    ]
    special = lambda i, t: {  # noqa: E731
        "id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
        # Matched after normalization: CLIP finds them in the lower-cased text.
        "normalized": True, "special": True,
    }
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [special(BOS_ID, BOS), special(EOS_ID, EOS)],
        "normalizer": {"type": "Sequence", "normalizers": normalizers},
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": CLIP_PATTERN}, "behavior": "Removed", "invert": True},
                {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
            ],
        },
        "post_processor": {
            "type": "RobertaProcessing",
            "sep": [EOS, EOS_ID],
            "cls": [BOS, BOS_ID],
            "trim_offsets": False,
            "add_prefix_space": False,
        },
        "decoder": {
            "type": "Sequence",
            "decoders": [
                {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
                {"type": "Replace", "pattern": {"String": "</w>"}, "content": " "},
                {"type": "Strip", "content": " ", "start": 0, "stop": 1},
            ],
        },
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": EOS,
            "continuing_subword_prefix": "",
            "end_of_word_suffix": "</w>",
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": vocab,
            "merges": [f"{a} {b}" for a, b in merges],
        },
    }


def check(raw_json):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(raw_json)
    for text, want in [
        ("a photo of a cat", [49406, 320, 1125, 539, 320, 2368, 49407]),
        ("He is young, receding hairline.", [49406, 797, 533, 1888, 267, 1890, 796, 4658, 1148, 269, 49407]),
    ]:
        got = tok.encode(text).ids
        if got != want:
            sys.exit(f"check failed for {text!r}: {got} != {want}")
    print("check: Hugging Face tokenizers reproduces CLIP's ids for the two reference prompts")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vocab", help=f"path to {VOCAB_NAME} (default: pip download {WHEEL})")
    ap.add_argument("--out", default=os.path.join(ROOT, "assets", "tokenizer.json.gz"))
    ap.add_argument("--raw", help="also write the uncompressed JSON here")
    ap.add_argument("--check", action="store_true", help="verify with Hugging Face's tokenizers")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        vocab_path = args.vocab or fetch_vocab(tmp)
        vocab, merges = load_vocab_and_merges(vocab_path)
    doc = build(vocab, merges)
    raw = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as gz:
        gz.write(raw)
    with open(args.out, "wb") as f:
        f.write(buf.getvalue())
    if args.raw:
        with open(args.raw, "wb") as f:
            f.write(raw)
    n_norm = len(doc["normalizer"]["normalizers"])
    print(f"{args.out}: {len(buf.getvalue())} bytes gzipped ({len(raw)} raw), {len(vocab)} ids, "
          f"{len(merges)} merges, {n_norm} normalizers, sha256 {hashlib.sha256(raw).hexdigest()}")
    if args.check:
        check(raw.decode("utf-8"))


if __name__ == "__main__":
    main()
