"""Pretraining stages at toy sizes (8px images, a few steps): outputs load, metrics are finite, the CLI runs."""
import json
import math

import pytest
import torch

from vapi.cli import main
from vapi.config import load_config
from vapi.data import ProceduralShapes
from vapi.eval.features import ClassifierExtractor
from vapi.models.weights_io import load_pretrained
from vapi.models.classifier import Classifier, ClassifierConfig
from vapi.models.llamagen_gpt import LlamaGenGPT
from vapi.models.llamagen_vq import VQModel
from vapi.models.infer_config import CheckpointError
from vapi.pretrain import SeededBatches, optimizer_and_schedule
from vapi.pretrain.features import FeaturesPretrainConfig, augment, calibrate_feature_scale, pretrain_features
from vapi.pretrain.prior import PriorPretrainConfig, pretrain_prior
from vapi.pretrain.tokenizer import TokenizerPretrainConfig, partial_path, pretrain_tokenizer, tokenizer_loss

TOK = dict(image_size=8, ch=8, ch_mult=[1, 2], norm_groups=4, z_channels=8, codebook_size=16, codebook_dim=4,
           steps=4, batch_size=8, warmup_steps=1, val_size=8, restart_every=2)
PRIOR = dict(image_size=8, dim=16, n_layer=1, n_head=2, steps=3, batch_size=8, warmup_steps=1, val_size=8,
             samples_per_class=1)
FEAT = dict(image_size=8, widths=[4, 8, 8], steps=3, batch_size=8, warmup_steps=1, val_size=10)


def _numbers(metrics: dict) -> list[float]:
    return [v for v in metrics.values() if isinstance(v, (int, float)) and not isinstance(v, bool)]


@pytest.fixture(scope="module")
def data():
    return ProceduralShapes(40, image_size=8, seed=0)


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory, data):
    out = tmp_path_factory.mktemp("tok")
    pretrain_tokenizer(TokenizerPretrainConfig(**TOK), data, out, progress=False)
    return out


def test_tokenizer_writes_loadable_outputs(tokenizer_dir):
    vq = load_pretrained(tokenizer_dir)
    assert isinstance(vq, VQModel) and vq.config.codebook_size == 16 and vq.downsample == 2
    metrics = json.loads((tokenizer_dir / "metrics.json").read_text())
    assert all(math.isfinite(v) for v in _numbers(metrics))
    assert 0 < metrics["codebook_usage_pct"] <= 100 and metrics["tokens_per_image"] == 16
    assert vq.encode(torch.zeros(1, 3, 8, 8)).shape == (1, 16)


def test_tokenizer_loss_decreases_on_a_fixed_batch(data):
    torch.manual_seed(0)
    cfg = TokenizerPretrainConfig(**TOK)
    vq = VQModel(cfg.vq_config())
    opt, _ = optimizer_and_schedule(vq, 3e-3, 0.0, warmup_steps=0, steps=40)
    images = torch.stack([data[i][0] for i in range(8)])  # [8, 3, 8, 8]
    losses = []
    for _ in range(40):
        loss, stats, codes, _ = tokenizer_loss(cfg, vq, images)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert codes.shape == (8, 16) and set(stats) >= {"mse", "l1", "gradient", "codebook", "commit"}
    assert sum(losses[-5:]) / 5 < 0.6 * sum(losses[:5]) / 5


def test_seeded_batches_are_torchs_shuffled_batches(data):
    """The stream is DataLoader(shuffle=True, generator) pass after pass, with other draws from the generator in
    between: the batches the shipped demo stages were trained on."""
    gen, ref_gen = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    stream = SeededBatches(data, 8, gen)
    loader = torch.utils.data.DataLoader(data, batch_size=8, shuffle=True, drop_last=True, generator=ref_gen)
    reference = (batch for _ in range(3) for batch in loader)
    for _ in range(12):
        (x, y), (x_ref, y_ref) = next(stream), next(reference)
        assert torch.equal(x, x_ref) and torch.equal(y, torch.as_tensor(y_ref))
        torch.rand(2, generator=gen), torch.rand(2, generator=ref_gen)


@pytest.mark.parametrize("workers", [0, 2])
def test_seeded_batches_resume_where_they_were(data, workers):
    """40 images, 8 per batch: 5 batches a pass. Saved 7 batches in (mid second pass, after other draws from the
    generator), a fresh stream on another seed continues with the batches the uninterrupted one takes."""
    gen = torch.Generator().manual_seed(0)
    stream = SeededBatches(data, 8, gen, num_workers=workers)
    for _ in range(7):
        next(stream)
        torch.randint(0, 10, (3,), generator=gen)  # others draw from the same generator (code restarts)
    state, gen_state = stream.state_dict(), gen.get_state()
    expected = [next(stream)[0] for _ in range(8)]  # crosses into a third pass
    resumed = SeededBatches(data, 8, torch.Generator().manual_seed(99), num_workers=workers)
    resumed.load_state_dict(state, gen_state)
    got = [next(resumed)[0] for _ in range(8)]
    assert all(torch.equal(a, b) for a, b in zip(expected, got))
    assert not torch.equal(expected[0], next(iter(SeededBatches(data, 8, torch.Generator().manual_seed(99))))[0])


def _crash_at(monkeypatch, call: int):
    """Make the tokenizer's loss raise on its `call`-th evaluation: a build killed mid-run."""
    import vapi.pretrain.tokenizer as tok

    calls, real = [0], tok.tokenizer_loss

    def loss(*args, **kw):
        calls[0] += 1
        if calls[0] == call:
            raise KeyboardInterrupt
        return real(*args, **kw)
    monkeypatch.setattr(tok, "tokenizer_loss", loss)


def test_tokenizer_resumes_to_the_same_weights(tmp_path, data, monkeypatch):
    """32 training images, 8 per batch: 4 batches a pass; saved every 3 steps, killed in step 8, resumed at step 6,
    in the middle of the second pass and after code restarts (every 2 steps) drew from the same generator."""
    cfg = TokenizerPretrainConfig(**{**TOK, "steps": 9, "restart_every": 2})
    pretrain_tokenizer(cfg, data, tmp_path / "whole", progress=False, checkpoint_every=3)
    assert not partial_path(tmp_path / "whole").exists()  # removed once the tokenizer is written
    with monkeypatch.context() as m:
        _crash_at(m, 8)  # killed in step 8: the state saved after step 6 survives
        with pytest.raises(KeyboardInterrupt):
            pretrain_tokenizer(cfg, data, tmp_path / "cut", progress=False, checkpoint_every=3)
    assert partial_path(tmp_path / "cut").is_file() and not (tmp_path / "cut").exists()
    assert not list(tmp_path.glob("*.tmp"))
    metrics = pretrain_tokenizer(cfg, data, tmp_path / "cut", progress=False, checkpoint_every=3)
    assert metrics["resumed_at_step"] == 6 and not partial_path(tmp_path / "cut").exists()
    whole, cut = load_pretrained(tmp_path / "whole").state_dict(), load_pretrained(tmp_path / "cut").state_dict()
    assert whole.keys() == cut.keys() and all(torch.equal(whole[k], cut[k]) for k in whole)
    saved = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    assert metrics["val_mse"] == saved["val_mse"] and metrics["codes_restarted"] == saved["codes_restarted"]


def test_tokenizer_refuses_another_builds_state(tmp_path, data, monkeypatch):
    cfg = TokenizerPretrainConfig(**{**TOK, "steps": 7})
    with monkeypatch.context() as m:
        _crash_at(m, 4)
        with pytest.raises(KeyboardInterrupt):
            pretrain_tokenizer(cfg, data, tmp_path / "tok", progress=False, checkpoint_every=2)
    other = TokenizerPretrainConfig(**{**TOK, "steps": 7, "lr": 1e-3})
    with pytest.raises(ValueError, match=r"another tokenizer build \(option lr differs\).*delete the file"):
        pretrain_tokenizer(other, data, tmp_path / "tok", progress=False, checkpoint_every=2)
    for other_data in (ProceduralShapes(48, image_size=8, seed=0), ProceduralShapes(40, image_size=8, seed=1)):
        with pytest.raises(ValueError, match="the training images differs"):
            pretrain_tokenizer(cfg, other_data, tmp_path / "tok", progress=False, checkpoint_every=2)
    assert partial_path(tmp_path / "tok").is_file()  # nothing lost: the same options still resume it


class _Payload:
    def __reduce__(self):
        return (print, ("code ran",))


def test_tokenizer_state_holding_code_is_refused(tmp_path, data, capsys):
    torch.save({"config": {}, "step": 1, "x": _Payload()}, partial_path(tmp_path / "tok"))
    with pytest.raises(CheckpointError, match="refuses to execute.*delete it to start the build over"):
        pretrain_tokenizer(TokenizerPretrainConfig(**TOK), data, tmp_path / "tok", progress=False,
                           checkpoint_every=2)
    assert "code ran" not in capsys.readouterr().out


@pytest.mark.parametrize("content,message", [(b"not a torch file", "truncated or corrupt.*delete it"),
                                             ({"config": {}, "step": 1}, r"not a vapi tokenizer training state")])
def test_tokenizer_state_unreadable_or_incomplete_is_a_clear_error(tmp_path, data, content, message):
    path = partial_path(tmp_path / "tok")
    path.write_bytes(content) if isinstance(content, bytes) else torch.save(content, path)
    with pytest.raises(ValueError, match=message):
        pretrain_tokenizer(TokenizerPretrainConfig(**TOK), data, tmp_path / "tok", progress=False,
                           checkpoint_every=2)


def test_prior_trains_samples_and_caches_tokens(tmp_path, tokenizer_dir, data):
    cache = tmp_path / "tokens.pt"
    cfg = PriorPretrainConfig(**PRIOR, token_cache=str(cache))
    metrics = pretrain_prior(cfg, tokenizer_dir, data, tmp_path / "prior", progress=False)
    gpt = load_pretrained(tmp_path / "prior")
    assert isinstance(gpt, LlamaGenGPT) and gpt.config.vocab_size == 16 and gpt.config.block_size == 16
    assert gpt.config.num_classes == 10 and gpt.config.class_dropout_prob == 0.1
    saved = json.loads((tmp_path / "prior" / "metrics.json").read_text())
    assert saved["val_ce_nats"] == metrics["val_ce_nats"] and all(math.isfinite(v) for v in _numbers(saved))
    assert 0 <= saved["val_token_acc"] <= 1 and (tmp_path / "prior" / "samples.png").is_file()
    assert cache.is_file()  # a second run reuses it
    again = pretrain_prior(cfg, tokenizer_dir, data, tmp_path / "prior2", progress=False)
    assert again["val_ce_nats"] == metrics["val_ce_nats"]  # deterministic given the seed


@pytest.mark.parametrize("arch", ["convnet", "resnet"])
def test_classifier_features_are_multiscale(arch):
    torch.manual_seed(0)
    model = Classifier(ClassifierConfig(arch=arch, num_classes=5, widths=[4, 6, 8], blocks=1)).eval()
    x = torch.randn(3, 3, 16, 16)
    feats = model.features(x)
    assert feats.shape == (3, 4 + 6 + 8)
    stages = model.stage_outputs(x)
    assert [s.shape[1:] for s in stages] == [(4, 16, 16), (6, 8, 8), (8, 4, 4)]
    torch.testing.assert_close(feats[:, :4], stages[0].mean(dim=(2, 3)))  # the early stage is in the features
    ext_feats, logits = ClassifierExtractor(model)((x.clamp(-1, 1) * 127.5 + 128).to(torch.uint8))
    assert ext_feats.shape == (3, 18) and logits.shape == (3, 5)


def test_feature_scale_calibration_balances_stages_and_keeps_logits():
    torch.manual_seed(0)
    model = Classifier(ClassifierConfig(arch="resnet", num_classes=5, widths=[4, 6, 8], blocks=1)).eval()
    x = torch.randn(64, 3, 16, 16)
    logits = model(x)
    calibrate_feature_scale(model, x)
    torch.testing.assert_close(model(x), logits, rtol=1e-4, atol=1e-5)
    feats = model.features(x)
    variances = [feats[:, a:b].var(0).sum().item() for a, b in ((0, 4), (4, 10), (10, 18))]
    assert all(abs(v - 1) < 1e-3 for v in variances)


def test_augment_shifts_and_flips_deterministically():
    x = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).view(2, 3, 6, 6)
    a = augment(x, 2, True, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and torch.equal(a, augment(x, 2, True, torch.Generator().manual_seed(1)))
    assert torch.equal(augment(x, 0, False, torch.Generator()), x)


def test_features_pretrain_is_deterministic_and_loadable(tmp_path, data):
    cfg = FeaturesPretrainConfig(**FEAT)
    m1 = pretrain_features(cfg, data, tmp_path / "a", progress=False)
    m2 = pretrain_features(cfg, data, tmp_path / "b", progress=False)
    assert m1["test_accuracy"] == m2["test_accuracy"] and m1["final_train_loss"] == m2["final_train_loss"]
    model = load_pretrained(tmp_path / "a")
    assert isinstance(model, Classifier) and model.config.feature_dim == 20
    feats, logits = ClassifierExtractor(model)(data[0][0][None])
    assert feats.shape == (1, 20) and logits.shape == (1, 10)
    assert all(math.isfinite(v) for v in _numbers(json.loads((tmp_path / "a" / "metrics.json").read_text())))


@pytest.mark.parametrize("stage,option", [("tokenizer", "codebook_size = 256"), ("prior", "dim = 128"),
                                          ("features", "arch = 'convnet'")])
def test_help_lists_every_option_with_default(capsys, stage, option):
    with pytest.raises(SystemExit) as e:
        main(["pretrain", stage, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert option in out and "--out" in out and "--procedural" in out
    assert all(f"  {name} = " in out for name in ("steps", "batch_size", "lr", "seed"))


def test_cli_end_to_end(tmp_path):
    tok, prior, feat = tmp_path / "tok", tmp_path / "prior", tmp_path / "feat"
    flat = lambda d: [f"{k}={v}".replace(" ", "") for k, v in d.items()]  # noqa: E731
    assert main(["pretrain", "tokenizer", "--out", str(tok), "--procedural", "40", "--checkpoint-every", "2",
                 *flat(TOK)]) == 0
    assert not partial_path(tok).exists()
    assert main(["pretrain", "prior", "--out", str(prior), "--procedural", "40", "--tokenizer", str(tok),
                 *flat(PRIOR)]) == 0
    assert main(["pretrain", "features", "--out", str(feat), "--procedural", "40", *flat(FEAT), "arch=resnet"]) == 0
    for d in (tok, prior, feat):
        assert {"config.json", "model.safetensors", "metrics.json", "config.yaml"} <= {p.name for p in d.iterdir()}
    assert load_config(TokenizerPretrainConfig, tok / "config.yaml").ch_mult == [1, 2]
    assert load_config(FeaturesPretrainConfig, feat / "config.yaml").arch == "resnet"
    assert main(["pretrain", "tokenizer", "--out", str(tok), "--procedural", "40", "no_such_option=1"]) == 2
    with pytest.raises(SystemExit) as e:
        main(["pretrain", "tokenizer", "--out", str(tok), "--procedural", "40", "--checkpoint-every", "-1"])
    assert e.value.code == 2
