"""Plain PyTorch building blocks of HR-NAS; they know nothing of NNI or of search strategies."""

from .layers import TORCH_LAYERS, LayerFactory, TokenQueries, Width, is_removed
from .searching_block import KernelPath, SearchingBlock
from .transformer import (
    POSITIONAL_ENCODINGS,
    LightweightTransformer,
    TransformerSettings,
    coordinate_map,
    sinusoidal_map,
)

__all__ = [
    "POSITIONAL_ENCODINGS",
    "TORCH_LAYERS",
    "KernelPath",
    "LayerFactory",
    "LightweightTransformer",
    "SearchingBlock",
    "TokenQueries",
    "TransformerSettings",
    "Width",
    "coordinate_map",
    "is_removed",
    "sinusoidal_map",
]
