"""Image data: ImageFolder trees, Hugging Face save_to_disk folders, and the embedded procedural dataset."""
from vapi.data.images import DataConfig, HFDiskDataset, ImageFolderDataset, build_dataset
from vapi.data.procedural import ProceduralShapes

__all__ = ["DataConfig", "HFDiskDataset", "ImageFolderDataset", "ProceduralShapes", "build_dataset"]
