"""Typed errors raised by codescaler; each names the file, field or value at fault."""


class CodeScalerError(Exception):
    """Base class of every error codescaler raises on purpose."""


class ModelLoadError(CodeScalerError):
    """A model directory cannot serve as a CodeScaler reward model (missing, wrong head, wrong labels)."""


class TemplateError(CodeScalerError):
    """The tokenizer has no chat template, or the template cannot render a (question, code) pair."""


class InputError(CodeScalerError, ValueError):
    """A request is malformed: wrong lengths, unknown policy or backend, bad JSON line."""


class EngineBuildError(CodeScalerError):
    """An engine cannot be built here (e.g. TensorRT without TensorRT or an NVIDIA GPU)."""
