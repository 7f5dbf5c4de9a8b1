"""Tiny models and configs shared by the tests (seconds on a CPU)."""
import torch

from vapi.models.llamagen_gpt import GPTConfig, LlamaGenGPT
from vapi.models.llamagen_vq import VQConfig, VQModel
from vapi.training.config import RunConfig


def tiny_tokenizer(seed=0, codebook=32):
    torch.manual_seed(seed)
    return VQModel(VQConfig(codebook_size=codebook, codebook_embed_dim=4, encoder_ch_mult=[1, 1, 1],
                            decoder_ch_mult=[1, 1, 1], z_channels=8, ch=8, num_res_blocks=1, norm_groups=4)).eval()


def tiny_policy(seed=0, vocab=32, **kw):
    torch.manual_seed(seed)
    model = LlamaGenGPT(GPTConfig(**{**dict(dim=32, n_layer=2, n_head=2, vocab_size=vocab, block_size=16,
                                            num_classes=10), **kw}))
    torch.nn.init.normal_(model.output.weight, std=0.02)  # as after pretraining; LlamaGen's init zeroes the head
    return model


def tiny_config(tmp_path, **train):
    cfg = RunConfig()
    cfg.reward.lpips = 0.0
    cfg.objective.num_generations = 4
    cfg.train.per_device_batch_size = 4
    cfg.train.micro_batch_size = 8
    cfg.train.max_steps = 2
    cfg.train.image_steps = 0
    cfg.train.sample_steps = 0
    cfg.train.progress = False
    cfg.train.tensorboard = False
    cfg.train.output_dir = str(tmp_path / "run")
    cfg.optim.learning_rate = 1e-3
    for k, v in train.items():
        setattr(cfg.train, k, v)
    return cfg


def trained_tokenizer(dataset, steps=150, seed=0, codebook=32):
    """A tiny tokenizer fitted for a few seconds, so decoded images depend on the codes (a random one barely does)."""
    tok = tiny_tokenizer(seed, codebook).train()
    images = torch.stack([dataset[i][0] for i in range(len(dataset))])
    opt = torch.optim.Adam(tok.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        batch = images[torch.randint(0, len(images), (16,), generator=g)]
        recon, losses = tok(batch)
        loss = (recon - batch).pow(2).mean() + losses["codebook"] + losses["commit"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    return tok.eval().requires_grad_(False)
