"""LlamaGen VQ tokenizer (VQ-16 / VQ-8): convolutional encoder, l2-normalised codebook, decoder.

One architecture, its config dataclass and presets. Key names match LlamaGen's
`tokenizer/tokenizer_image/vq_model.py`, so official `vq_ds16_c2i.pt` / `vq_ds8_c2i.pt` load strictly. The
reference hard-codes the encoder/decoder base width `ch=128`; here it is `VQConfig.ch` (the fixtures use 32, the
CPU demo smaller models). The codebook is l2-normalised at use time (the stored rows are not unit-norm), distances
are ||z||² + ||e||² − 2 z·e, codes are row-major over (h, w).

Public surface used by vapi: `encode(images) -> codes [B, h*w]`, `decode(codes) -> images [B, 3, H, W]`
(nominally in [-1, 1], not clamped, as the reference), `downsample`, `latent_grid(image_size)`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class VQConfig:
    """LlamaGen's VQ `ModelArgs` plus the encoder/decoder width the reference fixes at 128."""

    codebook_size: int = 16384
    codebook_embed_dim: int = 8
    codebook_l2_norm: bool = True
    codebook_show_usage: bool = True
    commit_loss_beta: float = 0.25
    entropy_loss_ratio: float = 0.0
    encoder_ch_mult: list[int] = field(default_factory=lambda: [1, 1, 2, 2, 4])
    decoder_ch_mult: list[int] = field(default_factory=lambda: [1, 1, 2, 2, 4])
    z_channels: int = 256
    dropout_p: float = 0.0
    ch: int = 128
    num_res_blocks: int = 2
    norm_groups: int = 32  # GroupNorm(32) in the reference; smaller only for tiny CPU models

    def __post_init__(self):
        widths = {self.ch * m for m in self.encoder_ch_mult + self.decoder_ch_mult}
        bad = sorted(w for w in widths if w % self.norm_groups)
        if bad:
            raise ValueError(f"VQ channel widths {bad} are not divisible by norm_groups={self.norm_groups}; "
                             f"change ch ({self.ch}) or norm_groups")

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.encoder_ch_mult) - 1)

    def latent_grid(self, image_size: int) -> int:
        if image_size % self.downsample:
            raise ValueError(f"image size {image_size} is not divisible by the tokenizer's downsample factor "
                             f"{self.downsample}; use a multiple of {self.downsample}")
        return image_size // self.downsample

    def to_dict(self) -> dict:
        return asdict(self)


VQ_PRESETS: dict[str, dict] = {
    "VQ-16": dict(encoder_ch_mult=[1, 1, 2, 2, 4], decoder_ch_mult=[1, 1, 2, 2, 4]),
    "VQ-8": dict(encoder_ch_mult=[1, 2, 2, 4], decoder_ch_mult=[1, 2, 2, 4]),
}


def vq_config(preset: str, **overrides) -> VQConfig:
    if preset not in VQ_PRESETS:
        raise ValueError(f"unknown VQ preset {preset!r}; choose one of {', '.join(VQ_PRESETS)}")
    return VQConfig(**{**VQ_PRESETS[preset], **overrides})


def swish(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(x)


class ResnetBlock(nn.Module):
    def __init__(self, cin: int, cout: int, dropout: float, groups: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=1e-6)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, cout, eps=1e-6)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        if cin != cout:
            self.nin_shortcut = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(swish(self.norm1(x)))
        h = self.conv2(self.dropout(swish(self.norm2(h))))
        return (self.nin_shortcut(x) if hasattr(self, "nin_shortcut") else x) + h


class AttnBlock(nn.Module):
    def __init__(self, c: int, groups: int):
        super().__init__()
        self.norm = nn.GroupNorm(groups, c, eps=1e-6)
        self.q, self.k, self.v, self.proj_out = (nn.Conv2d(c, c, 1) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        B, C, H, W = h.shape
        q = self.q(h).reshape(B, C, H * W).permute(0, 2, 1)  # [B, HW, C]
        k = self.k(h).reshape(B, C, H * W)  # [B, C, HW]
        w = torch.softmax(torch.bmm(q, k) * C**-0.5, dim=2)  # [B, HWq, HWk]
        v = self.v(h).reshape(B, C, H * W)
        out = torch.bmm(v, w.permute(0, 2, 1)).reshape(B, C, H, W)
        return x + self.proj_out(out)


class Downsample(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x.float(), scale_factor=2.0, mode="nearest").to(x.dtype))


class Encoder(nn.Module):
    def __init__(self, cfg: VQConfig):
        super().__init__()
        ch, mult, g = cfg.ch, cfg.encoder_ch_mult, cfg.norm_groups
        self.num_res_blocks = cfg.num_res_blocks
        self.conv_in = nn.Conv2d(3, ch, 3, padding=1)
        self.conv_blocks = nn.ModuleList()
        cin = ch
        for level, m in enumerate(mult):
            block = nn.Module()
            block.res, block.attn = nn.ModuleList(), nn.ModuleList()
            for _ in range(cfg.num_res_blocks):
                block.res.append(ResnetBlock(cin, ch * m, cfg.dropout_p, g))
                cin = ch * m
                if level == len(mult) - 1:
                    block.attn.append(AttnBlock(cin, g))
            if level != len(mult) - 1:
                block.downsample = Downsample(cin)
            self.conv_blocks.append(block)
        self.mid = nn.ModuleList([ResnetBlock(cin, cin, cfg.dropout_p, g), AttnBlock(cin, g),
                                  ResnetBlock(cin, cin, cfg.dropout_p, g)])
        self.norm_out = nn.GroupNorm(g, cin, eps=1e-6)
        self.conv_out = nn.Conv2d(cin, cfg.z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for block in self.conv_blocks:
            for i, res in enumerate(block.res):
                h = res(h)
                if len(block.attn):
                    h = block.attn[i](h)
            if hasattr(block, "downsample"):
                h = block.downsample(h)
        for m in self.mid:
            h = m(h)
        return self.conv_out(swish(self.norm_out(h)))


class Decoder(nn.Module):
    def __init__(self, cfg: VQConfig):
        super().__init__()
        ch, mult, g = cfg.ch, cfg.decoder_ch_mult, cfg.norm_groups
        cin = ch * mult[-1]
        self.conv_in = nn.Conv2d(cfg.z_channels, cin, 3, padding=1)
        self.mid = nn.ModuleList([ResnetBlock(cin, cin, cfg.dropout_p, g), AttnBlock(cin, g),
                                  ResnetBlock(cin, cin, cfg.dropout_p, g)])
        self.conv_blocks = nn.ModuleList()
        for level in reversed(range(len(mult))):
            block = nn.Module()
            block.res, block.attn = nn.ModuleList(), nn.ModuleList()
            for _ in range(cfg.num_res_blocks + 1):
                block.res.append(ResnetBlock(cin, ch * mult[level], cfg.dropout_p, g))
                cin = ch * mult[level]
                if level == len(mult) - 1:
                    block.attn.append(AttnBlock(cin, g))
            if level != 0:
                block.upsample = Upsample(cin)
            self.conv_blocks.append(block)
        self.norm_out = nn.GroupNorm(g, cin, eps=1e-6)
        self.conv_out = nn.Conv2d(cin, 3, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(z)
        for m in self.mid:
            h = m(h)
        for block in self.conv_blocks:
            for i, res in enumerate(block.res):
                h = res(h)
                if len(block.attn):
                    h = block.attn[i](h)
            if hasattr(block, "upsample"):
                h = block.upsample(h)
        return self.conv_out(swish(self.norm_out(h)))


class VectorQuantizer(nn.Module):
    def __init__(self, cfg: VQConfig):
        super().__init__()
        self.l2_norm = cfg.codebook_l2_norm
        self.embedding = nn.Embedding(cfg.codebook_size, cfg.codebook_embed_dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / cfg.codebook_size, 1.0 / cfg.codebook_size)
        if cfg.codebook_show_usage:
            # Kept only so official checkpoints load strictly; vapi never updates it.
            self.register_buffer("codebook_used", torch.zeros(65536))

    def codebook(self) -> torch.Tensor:
        w = self.embedding.weight
        return F.normalize(w, p=2, dim=-1) if self.l2_norm else w  # [K, C]

    def quantize(self, z: torch.Tensor):
        """z [B, C, h, w] → (z normalised [B, h, w, C], z_q [B, h, w, C], codes [B*h*w])."""
        z = z.permute(0, 2, 3, 1).contiguous()
        if self.l2_norm:
            z = F.normalize(z, p=2, dim=-1)
        flat = z.view(-1, z.shape[-1])
        emb = self.codebook()
        d = flat.pow(2).sum(1, keepdim=True) + emb.pow(2).sum(1) - 2 * flat @ emb.t()  # [B*h*w, K]
        codes = d.argmin(dim=1)
        return z, emb[codes].view(z.shape), codes

    def lookup(self, codes: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """codes [B, h*w] → quantised latent [B, C, h, w]."""
        B = codes.shape[0]
        return self.codebook()[codes.reshape(-1)].view(B, grid[0], grid[1], -1).permute(0, 3, 1, 2).contiguous()


class VQModel(nn.Module):
    def __init__(self, cfg: VQConfig):
        super().__init__()
        self.config = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.quantize = VectorQuantizer(cfg)
        self.quant_conv = nn.Conv2d(cfg.z_channels, cfg.codebook_embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(cfg.codebook_embed_dim, cfg.z_channels, 1)

    @property
    def downsample(self) -> int:
        return self.config.downsample

    @property
    def vocab_size(self) -> int:
        return self.config.codebook_size

    def encode_latent(self, images: torch.Tensor) -> torch.Tensor:
        """Pre-quantisation latent [B, C, h, w] (C = codebook_embed_dim)."""
        return self.quant_conv(self.encoder(images))

    def quantize_latent(self, latent: torch.Tensor):
        """latent → (straight-through quant [B, C, h, w], codes [B, h*w], VQ losses dict)."""
        z, z_q, codes = self.quantize.quantize(latent)
        losses = {"codebook": (z_q - z.detach()).pow(2).mean(),
                  "commit": self.config.commit_loss_beta * (z_q.detach() - z).pow(2).mean()}
        quant = (z + (z_q - z).detach()).permute(0, 3, 1, 2)
        return quant, codes.view(latent.shape[0], -1), losses

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, 3, H, W] in [-1, 1] → codes [B, h*w] (int64, row-major)."""
        self._check_size(images.shape[-2:])
        return self.quantize_latent(self.encode_latent(images))[1]

    def decode_latent(self, quant: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.post_quant_conv(quant))

    def decode(self, codes: torch.Tensor, grid: tuple[int, int] | None = None) -> torch.Tensor:
        """codes [B, h*w] → images [B, 3, h*ds, w*ds]; a square grid is assumed unless given."""
        if grid is None:
            side = int(round(codes.shape[1] ** 0.5))
            if side * side != codes.shape[1]:
                raise ValueError(f"{codes.shape[1]} codes do not form a square grid; pass grid=(h, w)")
            grid = (side, side)
        if int(codes.max()) >= self.vocab_size or int(codes.min()) < 0:
            raise ValueError(f"token ids must lie in [0, {self.vocab_size}) for this tokenizer; "
                             f"got [{int(codes.min())}, {int(codes.max())}] (is the generator's vocab the same?)")
        return self.decode_latent(self.quantize.lookup(codes, grid))

    def forward(self, images: torch.Tensor):
        """Reconstruction through the straight-through quantiser: (images [B, 3, H, W], VQ losses)."""
        quant, _, losses = self.quantize_latent(self.encode_latent(images))
        return self.decode_latent(quant), losses

    def _check_size(self, hw) -> None:
        for s in hw:
            self.config.latent_grid(int(s))
