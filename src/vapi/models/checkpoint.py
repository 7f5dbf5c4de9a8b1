"""Old name of `vapi.models.weights_io`, kept only for the demo and pretrain modules that issue 13 is rewriting;
import from `vapi.models.weights_io` (training state is `vapi.training.checkpoint`). Remove with their next change."""
from vapi.models.weights_io import load_pretrained, load_vq, save_pretrained

__all__ = ["load_pretrained", "load_vq", "save_pretrained"]
