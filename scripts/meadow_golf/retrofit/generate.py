"""Generation with a retrofitted model: causal (greedy or sampled), the FIM prompt, and the
bidirectional fill of a masked span (the second stage of the CF line decoder, METHOD.md §10).

Causal generation of a transformers base uses its own generate() (KV / recurrent cache), with
the adapter on or off; our GPT (no cache) runs a plain loop of full forwards.

bidir_fill(prefix, L, suffix): the span is L mask tokens between prefix and suffix; each step runs
one bidirectional forward, and the still-masked slot whose most likely token is most probable is
fixed to that token (confidence order, one slot per step, L forwards). Greedy and deterministic.
"""

from __future__ import annotations

import contextlib

import torch

from meadow_golf.retrofit.scoring import RetrofitScorer

FIM_TOKENS = ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>")


def fim_ids(tokenizer) -> tuple[int, int, int] | None:
    """The tokenizer's (prefix, suffix, middle) FIM token ids, or None if it lacks any of them."""
    vocab = tokenizer.get_vocab()
    if all(t in vocab for t in FIM_TOKENS):
        return tuple(vocab[t] for t in FIM_TOKENS)
    return None


@torch.no_grad()
def loop_generate(scorer: RetrofitScorer, prefix: list[int], max_new: int, stop=None) -> list[int]:
    """Greedy causal continuation without a cache (one full forward per token): our GPT."""
    ids = list(prefix)
    out: list[int] = []
    for _ in range(max_new):
        logp = scorer.causal_rows(torch.tensor([ids], device=scorer.device))[0, -1]
        tok = int(logp.argmax())
        out.append(tok)
        ids.append(tok)
        if stop is not None and stop(out):
            break
    return out


class _StopOnText:
    """A transformers StoppingCriteria: stop once the generated text satisfies `stop(ids)`."""

    def __init__(self, start: int, stop):
        self.start, self.stop = start, stop

    def __call__(self, input_ids, scores, **kwargs):
        done = [bool(self.stop(row[self.start:].tolist())) for row in input_ids]
        return torch.tensor(done, device=input_ids.device)


@torch.no_grad()
def hf_generate(scorer: RetrofitScorer, prefix: list[int], max_new: int, stop=None, *, sample: bool = False,
                n: int = 1, temperature: float = 0.8, top_p: float = 0.95, seed: int = 0) -> list[list[int]]:
    """n continuations of prefix by transformers' generate (greedy when sample is False), adapter
    on or off as the scorer says. Each is cut after the first point where stop(ids) holds."""
    from transformers import StoppingCriteriaList

    model, base = scorer.model, scorer.base
    ids = torch.tensor([prefix], device=scorer.device)
    kwargs = dict(max_new_tokens=max_new, do_sample=sample, num_return_sequences=n,
                  pad_token_id=base.eos_id if base.eos_id is not None else base.start_id,
                  attention_mask=torch.ones_like(ids))
    if sample:
        kwargs.update(temperature=temperature, top_p=top_p, top_k=0)
        torch.manual_seed(seed)
    else:
        kwargs.update(temperature=None, top_p=None, top_k=None)
    if stop is not None:
        kwargs["stopping_criteria"] = StoppingCriteriaList([_StopOnText(len(prefix), stop)])
    # Only the real tokens may be generated: the mask token and the padding rows are never output.
    kwargs["suppress_tokens"] = list(range(base.n_real, model.get_input_embeddings().weight.shape[0]))
    ctx = model.disable_adapter() if (not scorer.adapter and hasattr(model, "disable_adapter")) \
        else contextlib.nullcontext()
    with ctx:
        out = model.generate(input_ids=ids, **kwargs)
    results = []
    for row in out[:, len(prefix):].tolist():
        cut = row
        if stop is not None:
            for k in range(1, len(row) + 1):
                if stop(row[:k]):
                    cut = row[:k]
                    break
        if base.eos_id is not None and base.eos_id in cut:
            cut = cut[:cut.index(base.eos_id)]
        results.append(cut)
    return results


def greedy(scorer: RetrofitScorer, prefix: list[int], max_new: int, stop=None) -> list[int]:
    if scorer.base.kind == "hf":
        return hf_generate(scorer, prefix, max_new, stop)[0]
    return loop_generate(scorer, prefix, max_new, stop)


@torch.no_grad()
def bidir_fill(scorer: RetrofitScorer, prefix: list[int], length: int, suffix: list[int]) -> list[int]:
    """The span of `length` tokens between prefix and suffix, filled in confidence order."""
    if length < 1:
        return []
    mask = scorer.base.mask_id
    ids = torch.tensor([prefix + [mask] * length + suffix], device=scorer.device)
    span = torch.arange(len(prefix), len(prefix) + length, device=scorer.device)
    for _ in range(length):
        logp = scorer.bidir_rows(ids)[0, span]  # (length, n_real)
        best, tok = logp.max(dim=-1)
        still = ids[0, span] == mask
        best = torch.where(still, best, torch.full_like(best, -float("inf")))
        k = int(best.argmax())
        ids[0, span[k]] = tok[k]
    return ids[0, span].tolist()
