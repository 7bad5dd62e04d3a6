"""SentencePiece tokenizers (a checkpoint folder's tokenizer.model: LLaMA 2,
Mistral) in the artifact, against the `sentencepiece` library on the same
model: encoding a corpus with whitespace runs, accents, CJK, emoji, tabs
and newlines, digits and a user-defined piece; decoding it back and
decoding random ids (byte pieces that are not valid UTF-8, control and
unknown pieces); with and without byte fallback, the dummy prefix and the
removal of extra whitespace; `kiln generate --prompt`; and the models Kiln
does not run."""
import json
import random

import pytest
import sentencepiece as spm
import torch
import transformers

from conftest import kiln
from test_checkpoints import ARCHITECTURES
from test_tokenizer import CORPUS

CORPUS_SP = CORPUS + [
    "<tool>call<tool> and <tool >", "  two  spaces  ", "\n\nnewlines\n",
    "ÀÉÎÕÜ àéîõü ß œ æ ø", "数字 2024 年 12 月", "a\u2581b ▁▁ literal",
]
# name -> the trainer's options and whether tokenizer_config.json asks for
# a BOS token in front.
STYLES = {
    # LLaMA 2 and Mistral: identity rules, dummy prefix, spaces kept, byte
    # fallback, digits split.
    "llama2": (dict(byte_fallback=True, add_dummy_prefix=True,
                    remove_extra_whitespaces=False, split_digits=True,
                    user_defined_symbols=["<tool>"]), True),
    # The trainer's defaults: no byte fallback (unknown pieces), extra
    # whitespace removed, no dummy prefix; no BOS.
    "plain": (dict(byte_fallback=False, add_dummy_prefix=False,
                   remove_extra_whitespaces=True), False),
}


def train(path, options, vocab_size=600, **extra):
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS_SP * 30), model_prefix=str(path),
        vocab_size=vocab_size, model_type=extra.pop("model_type", "bpe"),
        normalization_rule_name=extra.pop("normalization_rule_name",
                                          "identity"),
        character_coverage=0.995, allow_whitespace_only_pieces=True,
        hard_vocab_limit=False, minloglevel=2, **options, **extra)
    return spm.SentencePieceProcessor(model_file=f"{path}.model")


def checkpoint(path, model_file, bos):
    torch.manual_seed(0)
    config = ARCHITECTURES["llama3"]()
    config.vocab_size = 1024
    config.bos_token_id, config.eos_token_id = 1, 2
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    model.generation_config.bos_token_id = 1
    model.generation_config.eos_token_id = 2
    model.save_pretrained(str(path))
    (path / "tokenizer.model").write_bytes(model_file.read_bytes())
    (path / "tokenizer_config.json").write_text(
        json.dumps({"add_bos_token": bos}))
    return path


@pytest.fixture(scope="module", params=sorted(STYLES))
def compiled(request, tmp_path_factory):
    name = request.param
    options, bos = STYLES[name]
    root = tmp_path_factory.mktemp(name)
    sp = train(root / "sp", options)
    path = checkpoint(root / "ckpt", root / "sp.model", bos)
    artifact = root / "m.kiln"
    result = kiln("compile", str(path), "-o", str(artifact),
                  "--max-seq-len", "64")
    assert "warning" not in result.stderr, result.stderr
    return name, sp, bos, artifact


def tokenize(artifact, *args):
    return json.loads(kiln("tokenize", str(artifact), *args).stdout)


def test_encode_matches(compiled, tmp_path):
    name, sp, bos, artifact = compiled
    prefix = [sp.bos_id()] if bos else []
    for i, text in enumerate(CORPUS_SP):
        path = tmp_path / f"text{i}.txt"
        path.write_bytes(text.encode())
        want = prefix + sp.encode(text)
        assert tokenize(artifact, "--text-file", str(path))["ids"] == want, \
            (name, text, sp.encode(text, out_type=str))


def test_decode_matches(compiled):
    name, sp, _, artifact = compiled
    for text in CORPUS_SP:
        ids = sp.encode(text)
        if ids:
            got = tokenize(artifact, "--ids", ",".join(map(str, ids)))
            assert got["text"] == sp.decode(ids), (name, text)
    # Random ids: byte pieces that are not valid UTF-8 alone or cut
    # sequences, control and unknown pieces, pieces with the space symbol
    # first.
    rng = random.Random(0)
    for _ in range(40):
        ids = [rng.randrange(sp.get_piece_size())
               for _ in range(rng.randrange(1, 12))]
        got = tokenize(artifact, "--ids", ",".join(map(str, ids)))
        assert got["text"] == sp.decode(ids), (name, ids)


def test_generate_text(compiled, tmp_path):
    """A text prompt's ids as the library's, and the new tokens' text as
    they continue the prompt."""
    name, sp, bos, artifact = compiled
    prompt = "Café naïve 数字 🤖 the quick"
    ids = ([sp.bos_id()] if bos else []) + sp.encode(prompt)
    got = json.loads(kiln("generate", str(artifact), "--prompt", prompt,
                          "--max-new-tokens", "12", "--json").stdout)
    assert got["prompt_ids"] == ids
    # The model's vocabulary is larger than the tokenizer's: ids past it
    # decode to nothing, as in the library (which refuses them).
    new = [i for i in got["new_ids"] if i < sp.get_piece_size()]
    whole, before = sp.decode(ids + new), sp.decode(ids)
    assert whole.startswith(before)
    assert got["text"] == whole[len(before):], (name, got)
    plain = kiln("generate", str(artifact), "--prompt", prompt,
                 "--max-new-tokens", "12")
    shown = got["new_ids"][:-1] if got["finish_reason"] == "eos" else \
        got["new_ids"]
    shown = [i for i in shown if i < sp.get_piece_size()]
    assert plain.stdout == sp.decode(ids + shown)[len(before):] + "\n"


def test_tokenizer_json_is_preferred(tmp_path):
    """A folder with a tokenizer.json Kiln runs takes it; one whose
    tokenizer.json Kiln cannot run (the SentencePiece model rewritten, as
    LLaMA 2 folders carry) falls back to tokenizer.model, silently."""
    from test_tokenizer import train as train_bpe
    sp = train(tmp_path / "sp", STYLES["llama2"][0])
    path = checkpoint(tmp_path / "ckpt", tmp_path / "sp.model", True)
    bpe = train_bpe("gpt2")
    bpe.save(str(path / "tokenizer.json"))
    kiln("compile", str(path), "-o", str(tmp_path / "a.kiln"),
         "--max-seq-len", "8")
    assert tokenize(tmp_path / "a.kiln", "--text", "hello")["ids"] == \
        bpe.encode("hello").ids
    from tokenizers import normalizers
    # LLaMA 2's tokenizer.json: its normalizer spells SentencePiece's rules.
    bpe.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"),
                                           normalizers.Replace(" ", "\u2581")])
    bpe.save(str(path / "tokenizer.json"))
    result = kiln("compile", str(path), "-o", str(tmp_path / "b.kiln"),
                  "--max-seq-len", "8")
    assert "warning" not in result.stderr
    assert tokenize(tmp_path / "b.kiln", "--text", "hello")["ids"] == \
        [1] + sp.encode("hello")


@pytest.mark.parametrize("case,message", [
    ("unigram", "a unigram SentencePiece model is not supported yet"),
    ("nfkc", 'normalization "nmt_nfkc" is not supported yet'),
    ("garbage", "not a SentencePiece model (malformed protobuf)"),
])
def test_unsupported_models_are_warnings(case, message, tmp_path):
    if case == "garbage":
        (tmp_path / "sp.model").write_bytes(b"\xff\xff\xff\xff")
    else:
        extra = ({"model_type": "unigram"} if case == "unigram" else
                 {"normalization_rule_name": "nmt_nfkc"})
        train(tmp_path / "sp", {}, vocab_size=300, **extra)
    path = checkpoint(tmp_path / "ckpt", tmp_path / "sp.model", True)
    result = kiln("compile", str(path), "-o", str(tmp_path / "m.kiln"),
                  "--max-seq-len", "8")
    assert "kiln: warning: " in result.stderr and "tokenizer.model: " in \
        result.stderr and message in result.stderr, result.stderr
    result = kiln("tokenize", str(tmp_path / "m.kiln"), "--text", "hi",
                  check=False)
    assert result.returncode != 0 and "carries no tokenizer" in result.stderr
