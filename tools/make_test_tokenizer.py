#!/usr/bin/env python3
"""Builds tests/data/tokenizer/: a small Gemma-style tokenizer.json and the encodings transformers gives.

The tokenizer has the structure of Gemma 4's (hf_transformers_gemma4.md §6): BPE with byte fallback, a
normaliser that replaces spaces by "▁", no pre-tokenizer, Gemma's special tokens (<pad> 0, <eos> 1, <bos> 2,
<unk> 3, <mask> 4, and the chat tokens <|turn> / <turn|>), the decoder ▁→space + byte fallback + fuse. It is
trained with the `tokenizers` library on the repository's synthetic corpus (a real Gemma tokenizer is 33 MB
and cannot be fetched here). expected.json holds, for a list of texts, the ids transformers'
PreTrainedTokenizerFast produces and its decoding, which g4moe's C++ tokenizer must reproduce exactly.
Usage: python3 tools/make_test_tokenizer.py   (needs tokenizers and transformers)
"""
import json, os

from tokenizers import Tokenizer, decoders, models, normalizers, trainers
from transformers import PreTrainedTokenizerFast

OUT = "tests/data/tokenizer"
SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "<|turn>", "<turn|>"]
TEXTS = [
    "the small cat sees the dog near the river.",
    "Hello, World! Ünïcödé ✓ 日本語",
    "  leading and trailing spaces  ",
    "tabs\tand\nnew lines\n\n",
    "<|turn>user\nhi there<turn|>\n<|turn>model\nhello<turn|>\n",
    "numbers 1234567890 and symbols #$%&*()",
    "",
    "emoji 🙂 and a rare ẞ",
]


def main():
    os.makedirs(OUT, exist_ok=True)
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Replace(" ", "▁")
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    byte_tokens = [f"<0x{b:02X}>" for b in range(256)]
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=SPECIALS + byte_tokens, show_progress=False,
                                  initial_alphabet=[])
    texts = [json.loads(l)["text"] for l in open("data/tiny_corpus.jsonl")]
    tok.train_from_iterator(texts, trainer)
    path = os.path.join(OUT, "tokenizer.json")
    tok.save(path)
    fast = PreTrainedTokenizerFast(tokenizer_file=path, bos_token="<bos>", eos_token="<eos>", unk_token="<unk>",
                                   pad_token="<pad>")
    cases = []
    for t in TEXTS:
        ids = fast(t, add_special_tokens=False)["input_ids"]
        cases.append({"text": t, "ids": ids, "decoded": fast.decode(ids)})
    json.dump({"cases": cases}, open(os.path.join(OUT, "expected.json"), "w"), indent=1, ensure_ascii=False)
    print(f"vocab {tok.get_vocab_size()}, {len(cases)} cases")


if __name__ == "__main__":
    main()
