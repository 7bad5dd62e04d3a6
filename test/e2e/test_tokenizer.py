"""The tokenizer Kiln carries in the artifact (a checkpoint folder's
tokenizer.json, byte-level BPE) against Hugging Face `tokenizers` on the
same file: encoding a corpus with whitespace runs, accents, CJK, emoji,
special tokens and numbers; decoding it back and decoding random ids
(bytes that are not valid UTF-8 included); `kiln generate --prompt` with
text out, against transformers; and the errors."""
import json
import random

import pytest
import torch
import transformers
from tokenizers import (Regex, Tokenizer, decoders, models, normalizers,
                        pre_tokenizers, processors, trainers)

from conftest import kiln
from test_checkpoints import ARCHITECTURES

CORPUS = [
    "Hello world! The quick brown fox's jumps  over   the lazy dog.\n\n"
    "It'S 1234567 o'clock.",
    "Café naïve résumé — déjà vu; Ünïcödé façade.",
    "日本語のテキストと中文字符，还有한국어 텍스트。",
    "Emoji 🤖🚀 and 👨‍👩‍👧 family, flags 🇫🇷!",
    "tabs\tand\r\nnewlines\n\n\n  trailing spaces   ",
    "x=1+2*3; if (a<b) {return [c, d];} // code",
    "<|endoftext|>special in the middle<|endoftext|>",
    "", " ", "   leading", "'re 'VE 'Ll 's", "١٢٣ ٤٥٦ Ⅻ ½ 99999",
    "\u00a0non-breaking\u2003em space\u3000ideographic",
    # Decomposed and out-of-order marks, singletons, Hangul jamo, a
    # composition exclusion: what Qwen2's NFC normalizer changes.
    "Cafe\u0301 nai\u0308ve re\u0301sume\u0301 \u212b \u2126 \u1e0b\u0323 "
    "d\u0307\u0323 a\u0323\u0301 \u0958 \u1100\u1161\u11a8 \u1112\u1161 "
    "\uac00\u11a8 e\u0301\u0301 \u0301start \u0344 q\u0307\u0323",
]
LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|"
          r"\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2 = LLAMA3.replace(r"\p{N}{1,3}", r"\p{N}")
# tokenizer style -> the architecture it ships with.
STYLES = {"gpt2": "gpt2", "llama3": "llama3", "qwen2": "qwen2"}
# Qwen2's tokenizer.json has an NFC normalizer; the others have none.


def train(style, vocab_size=400):
    t = Tokenizer(models.BPE(ignore_merges=style == "llama3"))
    if style == "gpt2":
        t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    else:
        t.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(LLAMA3 if style == "llama3" else QWEN2),
                                 behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    t.decoder = decoders.ByteLevel()
    if style == "qwen2":
        t.normalizer = normalizers.NFC()
    specials = ["<|endoftext|>"]
    if style == "llama3":
        specials = ["<|begin_of_text|>"] + specials
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    t.train_from_iterator(CORPUS * 20, trainer)
    if style == "llama3":
        t.post_processor = processors.TemplateProcessing(
            single="<|begin_of_text|> $A",
            special_tokens=[("<|begin_of_text|>",
                             t.token_to_id("<|begin_of_text|>"))])
    return t


def checkpoint_with(path, style, tokenizer):
    torch.manual_seed(0)
    config = ARCHITECTURES[STYLES[style]]()
    config.vocab_size = 512
    eos = tokenizer.token_to_id("<|endoftext|>")
    config.eos_token_id = eos
    config.bos_token_id = None
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    model.generation_config.eos_token_id = eos
    model.generation_config.bos_token_id = None
    model.save_pretrained(str(path))
    tokenizer.save(str(path / "tokenizer.json"))
    return path


@pytest.fixture(scope="module", params=sorted(STYLES))
def compiled(request, tmp_path_factory):
    style = request.param
    root = tmp_path_factory.mktemp(style)
    tokenizer = train(style)
    path = checkpoint_with(root / "ckpt", style, tokenizer)
    artifact = root / "m.kiln"
    kiln("compile", str(path), "-o", str(artifact), "--max-seq-len", "64")
    return style, tokenizer, path, artifact


def tokenize(artifact, *args):
    return json.loads(kiln("tokenize", str(artifact), *args).stdout)


def test_encode_matches(compiled, tmp_path):
    style, tokenizer, _, artifact = compiled
    for i, text in enumerate(CORPUS):
        # Through a file too: the command line cannot carry every byte.
        path = tmp_path / f"text{i}.txt"
        path.write_bytes(text.encode())
        want = tokenizer.encode(text).ids
        assert tokenize(artifact, "--text-file", str(path))["ids"] == want, \
            (style, text)


def test_decode_matches(compiled):
    style, tokenizer, _, artifact = compiled
    for text in CORPUS:
        ids = tokenizer.encode(text).ids
        if ids:
            got = tokenize(artifact, "--ids", ",".join(map(str, ids)))
            assert got["text"] == tokenizer.decode(
                ids, skip_special_tokens=False), (style, text)
    # Random ids: single bytes that are not valid UTF-8 alone, cut
    # sequences, special tokens.
    rng = random.Random(0)
    for _ in range(25):
        ids = [rng.randrange(tokenizer.get_vocab_size())
               for _ in range(rng.randrange(1, 12))]
        got = tokenize(artifact, "--ids", ",".join(map(str, ids)))
        assert got["text"] == tokenizer.decode(
            ids, skip_special_tokens=False), (style, ids)


def test_generate_text(compiled):
    """Text in, text out: the same ids and text as transformers."""
    style, tokenizer, path, artifact = compiled
    prompt = "Café naïve 日本語 🤖 the quick"
    ids = tokenizer.encode(prompt).ids
    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(path), dtype=torch.float32).eval()
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=20,
                             do_sample=False, pad_token_id=0,
                             attention_mask=torch.ones(1, len(ids),
                                                       dtype=torch.long))
    want = out[0, len(ids):].tolist()
    got = json.loads(kiln("generate", str(artifact), "--prompt", prompt,
                          "--max-new-tokens", "20", "--json").stdout)
    assert got["prompt_ids"] == ids
    assert got["new_ids"] == want
    assert got["text"] == tokenizer.decode(want, skip_special_tokens=False)
    # Streamed to stdout: the text without an end-of-sequence token.
    plain = kiln("generate", str(artifact), "--prompt", prompt,
                 "--max-new-tokens", "20")
    shown = want[:-1] if got["finish_reason"] == "eos" else want
    assert plain.stdout == tokenizer.decode(shown,
                                            skip_special_tokens=False) + "\n"


def test_errors(tmp_path):
    cases = []
    t = train("gpt2")
    t.normalizer = normalizers.NFKC()
    cases.append((t, 'normalizer "NFKC" is not supported; Kiln applies NFC'))
    t = train("gpt2")
    t.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"\w+|\s+"), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    cases.append((t, "the pre-tokenizer's pattern is not one Kiln has a "
                     "matcher for"))
    t = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    cases.append((t, 'model type "WordPiece" is not supported'))
    cases.append((train("gpt2", vocab_size=600),
                  "tokens, more than the model's vocabulary of 512"))
    # A tokenizer Kiln cannot run is a warning: the model compiles without
    # it, and takes token ids.
    for i, (tokenizer, message) in enumerate(cases):
        path = checkpoint_with(tmp_path / f"c{i}", "gpt2", train("gpt2"))
        tokenizer.save(str(path / "tokenizer.json"))
        out = tmp_path / f"c{i}.kiln"
        result = kiln("compile", str(path), "-o", str(out), "--max-seq-len",
                      "8")
        assert "kiln: warning: " in result.stderr and \
            "tokenizer.json: " in result.stderr and message in \
            result.stderr and "the artifact carries no tokenizer (prompts " \
            "must be token ids)" in result.stderr, result.stderr
        result = kiln("tokenize", str(out), "--text", "hi", check=False)
        assert result.returncode != 0 and "carries no tokenizer" in \
            result.stderr
    # No tokenizer: a text prompt is refused, ids work.
    path = checkpoint_with(tmp_path / "none", "gpt2", train("gpt2"))
    (path / "tokenizer.json").unlink()
    artifact = tmp_path / "none.kiln"
    kiln("compile", str(path), "-o", str(artifact), "--max-seq-len", "8")
    result = kiln("generate", str(artifact), "--prompt", "hi", check=False)
    assert result.returncode != 0 and "carries no tokenizer" in result.stderr
    result = kiln("tokenize", str(artifact), "--text", "hi", check=False)
    assert result.returncode != 0 and "carries no tokenizer" in result.stderr
