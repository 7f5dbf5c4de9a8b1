"""Tiny text-to-image models and caption data for the tests, built in-process (no downloads; seconds on a CPU).

- `tiny_t5_folder`: a 1-layer random T5 encoder + a word-level tokenizer (EOS appended), saved as an HF folder;
- `tiny_t2i_policy`: a LlamaGen T2I GPT reading `CAPTION_TOKENS` T5 tokens of `T5_DIM` channels;
- `tiny_janus_folder`: a random JanusConfig (2-layer Llama, 32 px, 4x4 image tokens, 64 codes) with its processor
  (word-level tokenizer, Janus-style chat template), saved with `save_pretrained`;
- `write_caption_folder` / `write_tar_shards`: ProceduralShapes images captioned "a <colour> <shape>".
"""
import csv
import io
import json
import os
import tarfile

import numpy as np
import torch
from PIL import Image

from vapi.data.procedural import CLASSES, ProceduralShapes
from vapi.models.llamagen_gpt import GPTConfig, LlamaGenGPT

os.environ.setdefault("HF_HUB_OFFLINE", "1")

T5_DIM, CAPTION_TOKENS = 16, 8
WORDS = ["a", "photo", "of", "two", "the", "under", "rain"] + sorted({w for s, c, _ in CLASSES for w in (s, c)})
BOS, PAD, BOI = "<｜begin▁of▁sentence｜>", "<｜▁pad▁｜>", "<begin_of_image>"
CHAT_TEMPLATE = ("{% for m in messages %}{% if m['role'] == 'user' %}<|User|>: {% for c in m['content'] %}"
                 "{{ c['text'] }}{% endfor %}{{ '\\n\\n' }}{% endif %}{% endfor %}"
                 "{% if add_generation_prompt %}<|Assistant|>:{% endif %}")


def caption(label: int) -> str:
    shape, colour, _ = CLASSES[label]
    return f"a {colour} {shape}"


def _word_tokenizer(special: list[str], template: str, template_ids: dict, **kwargs):
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(special + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(
        single=template, special_tokens=[(t, vocab[t]) for t in template_ids])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", **kwargs), vocab


def tiny_t5_folder(path, seed=0):
    from transformers import T5Config, T5EncoderModel

    tok, vocab = _word_tokenizer(["<pad>", "</s>", "<unk>"], "$A </s>", ["</s>"], pad_token="<pad>",
                                 eos_token="</s>")
    torch.manual_seed(seed)
    model = T5EncoderModel(T5Config(vocab_size=len(vocab), d_model=T5_DIM, d_kv=8, d_ff=32, num_layers=1,
                                    num_heads=2, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0))
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def tiny_t2i_policy(seed=0, vocab=32):
    torch.manual_seed(seed)
    model = LlamaGenGPT(GPTConfig(dim=32, n_layer=2, n_head=2, vocab_size=vocab, block_size=16, model_type="t2i",
                                  caption_dim=T5_DIM, cls_token_num=CAPTION_TOKENS))
    torch.nn.init.normal_(model.output.weight, std=0.5)  # LlamaGen zero-inits the head: give it signal
    return model


def tiny_janus_model(seed=0):
    from transformers import JanusConfig, JanusForConditionalGeneration, JanusImageProcessor, JanusProcessor

    special = ["<unk>", BOS, PAD, BOI, "<end_of_image>", "<image_placeholder>", "<|User|>:", "<|Assistant|>:"]
    tok, vocab = _word_tokenizer(special, f"{BOS} $A", [BOS], bos_token=BOS, pad_token=PAD, extra_special_tokens={
        "image_token": "<image_placeholder>", "boi_token": BOI, "eoi_token": "<end_of_image>"})
    processor = JanusProcessor(image_processor=JanusImageProcessor(size={"height": 32, "width": 32}), tokenizer=tok,
                               chat_template=CHAT_TEMPLATE, num_image_tokens=16)
    config = JanusConfig(
        text_config=dict(model_type="llama", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, vocab_size=len(vocab),
                         max_position_embeddings=128),
        vision_config=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=32, patch_size=8,
                           projection_dim=32, num_image_tokens=16, mlp_ratio=2.0),
        vq_config=dict(embed_dim=8, num_embeddings=64, latent_channels=32, base_channels=32,
                       channel_multiplier=[1, 1, 1, 1], num_res_blocks=1, projection_dim=32,
                       image_token_embed_dim=32, num_hidden_layers=2),
        image_token_id=vocab["<image_placeholder>"])
    torch.manual_seed(seed)
    model = JanusForConditionalGeneration(config).eval()
    vq = set(model.model.vqmodel.modules())
    for module in model.modules():  # a random init at std 0.02 generates one repeated token; 0.5 varies
        if isinstance(module, (torch.nn.Linear, torch.nn.Embedding)) and module not in vq:
            torch.nn.init.normal_(module.weight, std=0.5)
    model.generation_config.bos_token_id, model.generation_config.pad_token_id = vocab[BOS], vocab[PAD]
    model.generation_config.generation_kwargs = {"boi_token_id": vocab[BOI]}  # what HF's generate reads
    return model, processor


def tiny_janus_folder(path, seed=0):
    model, processor = tiny_janus_model(seed)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return str(path)


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def write_caption_folder(path, n=12, image_size=32, fmt="jsonl", seed=1):
    """<path>/images/*.png + <path>/metadata.jsonl (or captions.csv)."""
    ds = ProceduralShapes(n, image_size=image_size, seed=seed)
    os.makedirs(os.path.join(path, "images"), exist_ok=True)
    rows = []
    for i in range(n):
        name = f"images/{i:04d}.png"
        Image.fromarray(ds.render(i)).save(os.path.join(path, name))
        rows.append({"file_name": name, "caption": caption(ds.label(i))})
    if fmt == "jsonl":
        with open(os.path.join(path, "metadata.jsonl"), "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
    else:
        with open(os.path.join(path, "captions.csv"), "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["file_name", "caption"])
            writer.writeheader()
            writer.writerows(rows)
    return str(path)


def write_tar_shards(path, n=12, shards=2, image_size=32, corrupt_shard=True, seed=2):
    """LAION-COCO-style shards: <key>.jpg + <key>.txt (even keys) or <key>.json (odd keys); plus a corrupt shard."""
    ds = ProceduralShapes(n, image_size=image_size, seed=seed)
    os.makedirs(path, exist_ok=True)
    for s in range(shards):
        with tarfile.open(os.path.join(path, f"{s:05d}.tar"), "w") as tf:
            for i in range(s, n, shards):
                key = f"{i:09d}"
                buf = io.BytesIO()
                Image.fromarray(ds.render(i)).save(buf, format="JPEG", quality=95)
                text = caption(ds.label(i))
                side = (f"{key}.txt", text.encode()) if i % 2 == 0 else \
                    (f"{key}.json", json.dumps({"caption": text, "url": "x"}).encode())
                for name, data in ((f"{key}.jpg", buf.getvalue()), side):
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tf.addfile(info, io.BytesIO(data))
    if corrupt_shard:
        with open(os.path.join(path, f"{shards:05d}.tar"), "wb") as f:
            f.write(b"this is not a tar archive" * 40)
    return str(path)


def tiny_clip_folder(path, seed=0):
    """A random 1-layer CLIPModel (16 px images, 8-dim projections) with a word-level tokenizer over WORDS."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import CLIPConfig, CLIPModel, PreTrainedTokenizerFast

    words = ["<pad>", "<unk>"] + WORDS
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>").save_pretrained(path)
    torch.manual_seed(seed)
    cfg = CLIPConfig(text_config=dict(vocab_size=len(words), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                      num_attention_heads=2, max_position_embeddings=16, bos_token_id=1,
                                      eos_token_id=2, pad_token_id=0),  # 2: pool at the argmax id
                     vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                        num_attention_heads=2, image_size=16, patch_size=8),
                     projection_dim=8)
    CLIPModel(cfg).save_pretrained(path)
    return str(path)
