"""Real, tiny transformers models saved with ``save_pretrained``, for serving tests that run in seconds.

Tokenizers are trained here with the tokenizers library; models are small Bert/GPT-2/T5 configs. The
copy-task GPT-2 is trained for a few hundred steps so generation has something real to get right.
"""

import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    GPT2Config,
    GPT2LMHeadModel,
    PreTrainedTokenizerFast,
    T5Config,
    T5ForConditionalGeneration,
)

SENTENCES = [
    "the film is a delight from start to finish",
    "a dull and lifeless script sinks the cast",
    "an uneven but often funny comedy",
    "the acting is superb and the story moving",
    "nothing here works and it drags on forever",
    "a quiet drama with a strong lead performance",
    "visually stunning yet emotionally empty",
    "I laughed, I cried, I want to see it again",
]
COPY_LETTERS = list("abcdefgh")
CLASSIFIER_LABELS = ["negative", "neutral", "positive"]
MULTI_LABELS = ["action", "comedy", "drama", "horror"]
BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _wordpiece(corpus: Iterable[str]) -> Tokenizer:
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.train_from_iterator(corpus, trainers.WordPieceTrainer(vocab_size=400, special_tokens=BERT_SPECIALS))
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    tokenizer.decoder = decoders.WordPiece()
    return tokenizer


def _byte_bpe(corpus: Iterable[str], specials: list[str]) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(corpus, trainer)
    return tokenizer


def build_classifier(path: Path, labels: list[str], *, multi_label: bool = False, max_positions: int = 24) -> Path:
    """A 2-layer, 32-wide BERT classifier with random weights: serving must reproduce its outputs exactly."""
    tokenizer = _wordpiece(SENTENCES * 4)
    config = _tiny_bert(
        tokenizer,
        labels,
        max_positions,
        initializer_range=0.5,  # wide enough that random heads give distinct, non-uniform probabilities
        problem_type="multi_label_classification" if multi_label else "single_label_classification",
    )
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(path)
    _save_wordpiece(tokenizer, path, max_positions)
    return path


def _tiny_bert(tokenizer: Tokenizer, labels: list[str], max_positions: int, **extra: Any) -> BertConfig:
    """A 2-layer, 32-wide BERT classifier's config over ``tokenizer``'s vocabulary."""
    return BertConfig(
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=max_positions,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
        **extra,
    )


def _save_wordpiece(tokenizer: Tokenizer, path: Path, max_positions: int) -> None:
    PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=max_positions,
    ).save_pretrained(path)


def build_seq2seq(path: Path) -> Path:
    """A 2-layer, 32-wide T5 with random weights."""
    tokenizer = _byte_bpe(SENTENCES * 4, ["<pad>", "</s>", "<unk>"])
    eos = tokenizer.token_to_id("</s>")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", eos)]
    )
    config = T5Config(
        vocab_size=tokenizer.get_vocab_size(),
        d_model=32,
        d_kv=16,
        d_ff=64,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=2,
        pad_token_id=tokenizer.token_to_id("<pad>"),
        eos_token_id=eos,
        decoder_start_token_id=tokenizer.token_to_id("<pad>"),
    )
    torch.manual_seed(0)
    T5ForConditionalGeneration(config).save_pretrained(path)
    PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", model_max_length=64
    ).save_pretrained(path)
    return path


def copy_example(rng: random.Random) -> str:
    return " ".join(rng.choice(COPY_LETTERS) for _ in range(4))


def build_copy_lm(path: Path, steps: int = 300) -> Path:
    """A 2-layer GPT-2 trained to continue ``"a b c d ="`` with ``" a b c d"``: learnt in a few seconds."""
    rng = random.Random(0)
    corpus = [f"{s} = {s}" for s in (copy_example(rng) for _ in range(300))]
    tokenizer = _byte_bpe(corpus, ["<|endoftext|>"])
    eos = tokenizer.token_to_id("<|endoftext|>")
    config = GPT2Config(
        vocab_size=tokenizer.get_vocab_size(),
        n_embd=32,
        n_layer=2,
        n_head=2,
        n_positions=32,
        bos_token_id=eos,
        eos_token_id=eos,
    )
    torch.manual_seed(0)
    model = GPT2LMHeadModel(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(steps):
        rows, targets = [], []
        for _ in range(64):
            text = copy_example(rng)
            prompt, answer = tokenizer.encode(f"{text} =").ids, tokenizer.encode(f" {text}").ids + [eos]
            rows.append(prompt + answer)
            targets.append([-100] * len(prompt) + answer)
        loss = model(input_ids=torch.tensor(rows), labels=torch.tensor(targets)).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval().save_pretrained(path)
    PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, eos_token="<|endoftext|>", bos_token="<|endoftext|>", model_max_length=32
    ).save_pretrained(path)
    return path


def build_lora_adapter(
    base_dir: Path,
    path: Path,
    task_type: str,
    target_modules: list[str],
    *,
    modules_to_save: list[str] | None = None,
    seed: int = 1,
) -> Path:
    """A LoRA adapter on a saved tiny model, with large random B weights (and head, if it saves one), so
    that it changes the outputs: peft's default B is zero, and its random one barely moves a trained model."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoModelForSequenceClassification

    auto = {
        "SEQ_CLS": AutoModelForSequenceClassification,
        "CAUSAL_LM": AutoModelForCausalLM,
        "SEQ_2_SEQ_LM": AutoModelForSeq2SeqLM,
    }[task_type]
    base = auto.from_pretrained(base_dir)
    config = LoraConfig(
        task_type=task_type,
        r=4,
        lora_alpha=8,
        target_modules=target_modules,
        modules_to_save=modules_to_save,
    )
    torch.manual_seed(seed)
    model = get_peft_model(base, config)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name or "modules_to_save" in name:
                parameter.add_(torch.randn_like(parameter) * 0.5)
    model.save_pretrained(path)
    return path


KEYWORDS = {
    "negative": ["awful", "boring", "dreadful", "tedious"],
    "positive": ["brilliant", "charming", "superb", "witty"],
}
KEYWORD_LABELS = ["negative", "neutral", "positive"]
FILLER = ["the", "film", "a", "story", "with", "cast", "plot", "and", "its", "scenes", "of", "this", "director", "an"]


def keyword_sentence(rng: random.Random, label: str) -> str:
    """Filler words around keywords: more of ``label``'s than of the other side's, as many of each for neutral.
    The keywords alone decide the label."""
    other = rng.randint(0, 1)
    counts = {"negative": 0, "positive": 0}
    if label == "neutral":
        counts = {"negative": other, "positive": other}
    else:
        counts[label] = other + rng.randint(1, 2)
        counts["negative" if label == "positive" else "positive"] = other
    words = [rng.choice(FILLER) for _ in range(rng.randint(5, 8))]
    for side, count in counts.items():
        for _ in range(count):
            words.insert(rng.randrange(len(words) + 1), rng.choice(KEYWORDS[side]))
    return " ".join(words)


def build_keyword_classifier(path: Path, steps: int = 150) -> Path:
    """A 2-layer, 32-wide BERT trained until its decision rests on a few keywords (more negative ones, more
    positive ones, or as many: neutral), so explanations have words to find: a faithful one puts them first."""
    labels = KEYWORD_LABELS
    rng = random.Random(0)
    corpus = [keyword_sentence(rng, label) for label in labels for _ in range(100)]
    tokenizer = _wordpiece(corpus)
    config = _tiny_bert(tokenizer, labels, 24)
    torch.manual_seed(0)
    model = BertForSequenceClassification(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(steps):
        chosen = [rng.randrange(len(labels)) for _ in range(32)]
        encoded = [tokenizer.encode(keyword_sentence(rng, labels[i])).ids for i in chosen]
        width = max(map(len, encoded))
        ids = torch.tensor([row + [0] * (width - len(row)) for row in encoded])
        mask = torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in encoded])
        logits = model(input_ids=ids, attention_mask=mask).logits
        # Smoothed labels keep the logits moderate: a saturated model's probability jumps from 0 to 1 in one
        # step along the integrated-gradients path, which no number of steps integrates.
        loss = torch.nn.functional.cross_entropy(logits, torch.tensor(chosen), label_smoothing=0.2)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval().save_pretrained(path)
    _save_wordpiece(tokenizer, path, 24)
    return path
