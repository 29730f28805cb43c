"""codescaler: an execution-free reward engine for code (CodeScaler reward models, exact and fast)."""

from .errors import CodeScalerError, EngineBuildError, InputError, ModelLoadError, TemplateError
from .extract import Extraction, extract, extract_batch
from .model import BestOfN, Reward, RewardModel
from .shape import shape, softplus

__version__ = "0.1.0"

__all__ = [
    "BestOfN",
    "CodeScalerError",
    "EngineBuildError",
    "Extraction",
    "InputError",
    "ModelLoadError",
    "Reward",
    "RewardModel",
    "TemplateError",
    "extract",
    "extract_batch",
    "shape",
    "softplus",
]
