"""Image data: ImageFolder trees, Hugging Face save_to_disk folders, caption folders and tar shards (T2I), and the
embedded procedural dataset; `build_dataset(DataConfig)` picks one (vapi.data.build).

Layering inside the package: `transforms` (conversions, the robust base dataset) ← `images`, `captions`,
`procedural` ← `build`."""
from vapi.data.build import CaptionedDataset, DataConfig, ImageDataset, build_dataset
from vapi.data.captions import CaptionFolderDataset, CaptionTarDataset, ConditionedDataset
from vapi.data.images import HFDiskDataset, ImageFolderDataset
from vapi.data.procedural import ProceduralShapes

__all__ = ["CaptionFolderDataset", "CaptionTarDataset", "CaptionedDataset", "ConditionedDataset", "DataConfig",
           "HFDiskDataset", "ImageDataset", "ImageFolderDataset", "ProceduralShapes", "build_dataset"]
