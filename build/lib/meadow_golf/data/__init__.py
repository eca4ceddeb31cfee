"""The data floor: the challenge's shard format and bytes, corpora, tokenizers, the validation stream."""
