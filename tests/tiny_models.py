"""Tiny, randomly initialised CLIP / SigLIP / X-CLIP checkpoints written at test time.

Each builder saves a real config, real tokenizer files (a small BPE or SentencePiece model
trained here on a few sentences) and the real image processor config to a folder, so the
code under test loads it with the same ``from_pretrained`` calls that load a hub checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import torch

CORPUS = [
    "a photo of a person running.",
    "a video of a person jumping, swimming, dancing and playing guitar.",
    "someone is cooking, eating, drinking, riding a bike, walking the dog.",
    "apply eye makeup, brush hair, push ups, tai chi, yo yo, basketball dunk.",
    "the quick brown fox jumps over the lazy dog 0123456789 {} ! ? ' \" - _",
] * 20


def _learn_bpe(words: dict[tuple[str, ...], int], merges: int) -> list[tuple[str, str]]:
    """Byte-pair merges learned from word counts, most frequent pair first and ties broken by
    the pair itself: the same merges in every process (the Rust trainer of `tokenizers` breaks
    ties by hash order, which changed the tiny vocabulary, hence every tiny model's text
    tower, from one test run to the next)."""
    learned: list[tuple[str, str]] = []
    for _ in range(merges):
        pairs: dict[tuple[str, str], int] = {}
        for word, count in words.items():
            for pair in zip(word, word[1:], strict=False):
                pairs[pair] = pairs.get(pair, 0) + count
        if not pairs:
            break
        best = min(pairs, key=lambda pair: (-pairs[pair], pair))
        learned.append(best)
        merged: dict[tuple[str, ...], int] = {}
        for word, count in words.items():
            out: list[str] = []
            i = 0
            while i < len(word):
                if word[i:i + 2] == best:
                    out.append(best[0] + best[1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            merged[tuple(out)] = merged.get(tuple(out), 0) + count
        words = merged
    return learned


def _clip_tokenizer(folder: Path):
    """A CLIP byte-level BPE (with CLIP's `</w>` word ends) learned from CORPUS."""
    from tokenizers import pre_tokenizers
    from transformers import CLIPTokenizer

    special = ["<|startoftext|>", "<|endoftext|>"]
    split = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    words: dict[tuple[str, ...], int] = {}
    for text in CORPUS:
        for piece, _ in split.pre_tokenize_str(text.lower()):
            word = (*piece[:-1], piece[-1] + "</w>")
            words[word] = words.get(word, 0) + 1
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    ordinary = alphabet + [c + "</w>" for c in alphabet]
    merges = _learn_bpe(words, 600 - len(ordinary) - len(special))
    for a, b in merges:
        if a + b not in ordinary:
            ordinary.append(a + b)
    # Real CLIP vocabularies end with <|startoftext|>, <|endoftext|>; X-CLIP's text pooling
    # still finds the end token by argmax over ids, so the tiny vocabulary keeps that order.
    vocab = {token: i for i, token in enumerate(ordinary + special)}
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)


def _siglip_tokenizer(folder: Path):
    """A SentencePiece unigram model (SigLIP's tokenizer format) trained on CORPUS."""
    import io

    import sentencepiece as spm
    from transformers import SiglipTokenizer

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS),
        model_writer=model,
        vocab_size=80,
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        pad_piece="<pad>",
        eos_piece="</s>",
        unk_piece="<unk>",
        minloglevel=2,
    )
    folder.mkdir(parents=True, exist_ok=True)
    spm_path = folder / "spiece.model"
    spm_path.write_bytes(model.getvalue())
    return SiglipTokenizer(vocab_file=str(spm_path), model_max_length=16)


def _seed(seed: int) -> None:
    torch.manual_seed(seed)


def _clip_image_processor():
    """CLIP's resize (short side) + centre crop + normalise, at the tiny 32 px input."""
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})


def _save(folder: Path, model, processor) -> Path:
    """Write model and processor files the way a hub checkpoint folder holds them."""
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def _text_config(tokenizer, **overrides) -> dict:
    """A 2-layer, 32-wide text tower whose vocabulary and special ids match ``tokenizer``."""
    return dict(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37,
        num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=77,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    ) | overrides


def _vision_config(**overrides) -> dict:
    """A 2-layer ViT on 32x32 inputs with 8x8 patches (16 patches + class token)."""
    return dict(
        image_size=32, patch_size=8, hidden_size=32, intermediate_size=37,
        num_hidden_layers=2, num_attention_heads=4,
    ) | overrides


def make_tiny_clip(folder: Path, *, seed: int = 0) -> Path:
    """CLIPModel (ViT, 32 px input, 16-d embeddings) + CLIPTokenizer + CLIPImageProcessor."""
    from transformers import CLIPConfig, CLIPModel, CLIPProcessor

    folder = Path(folder)
    tokenizer = _clip_tokenizer(folder)
    config = CLIPConfig(
        text_config=_text_config(tokenizer), vision_config=_vision_config(), projection_dim=16
    )
    _seed(seed)
    model = CLIPModel(config).eval()
    return _save(folder, model, CLIPProcessor(image_processor=_clip_image_processor(),
                                              tokenizer=tokenizer))


def make_tiny_siglip(folder: Path, *, seed: int = 0) -> Path:
    """SiglipModel (32 px, 32-d) + SentencePiece SiglipTokenizer + SiglipImageProcessor."""
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel, SiglipProcessor

    folder = Path(folder)
    tokenizer = _siglip_tokenizer(folder)
    config = SiglipConfig(
        # SiglipConfig's default special ids lie outside a tiny vocabulary; SigLIP has no
        # start token, so bos is set to its end token.
        text_config=_text_config(tokenizer, max_position_embeddings=16,
                                 bos_token_id=tokenizer.eos_token_id),
        vision_config=_vision_config(),
    )
    _seed(seed)
    model = SiglipModel(config).eval()
    processor = SiglipProcessor(
        image_processor=SiglipImageProcessor(size={"height": 32, "width": 32}),
        tokenizer=tokenizer,
    )
    return _save(folder, model, processor)


def make_tiny_xclip(folder: Path, *, seed: int = 0, num_frames: int = 4) -> Path:
    """XCLIPModel (video encoder with message tokens, MIT, prompt generator) + its processor."""
    from transformers import XCLIPConfig, XCLIPModel, XCLIPProcessor

    folder = Path(folder)
    tokenizer = _clip_tokenizer(folder)
    config = XCLIPConfig(
        text_config=_text_config(tokenizer),
        vision_config=_vision_config(
            num_frames=num_frames, mit_hidden_size=16, mit_intermediate_size=24,
            mit_num_hidden_layers=1, mit_num_attention_heads=2,
        ),
        projection_dim=16,
        prompt_layers=1,
        prompt_num_attention_heads=2,
    )
    _seed(seed)
    model = XCLIPModel(config).eval()
    # The hub's X-CLIP checkpoints ship a VideoMAEImageProcessor; CLIP's processor does the
    # same resize/crop/normalise and needs no torchvision, so the tiny one uses it.
    return _save(folder, model, XCLIPProcessor(image_processor=_clip_image_processor(),
                                               tokenizer=tokenizer))
