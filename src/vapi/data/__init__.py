"""Image data: ImageFolder trees, Hugging Face save_to_disk folders, caption folders and tar shards (T2I), and the
embedded procedural dataset."""
from vapi.data.captions import CaptionFolderDataset, CaptionTarDataset, ConditionedDataset
from vapi.data.images import DataConfig, HFDiskDataset, ImageFolderDataset, build_dataset
from vapi.data.procedural import ProceduralShapes

__all__ = ["CaptionFolderDataset", "CaptionTarDataset", "ConditionedDataset", "DataConfig", "HFDiskDataset",
           "ImageFolderDataset", "ProceduralShapes", "build_dataset"]
