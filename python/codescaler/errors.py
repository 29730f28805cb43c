"""Typed errors raised by codescaler; each names the file, field or value at fault."""

import importlib


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


def require_extra(extra: str, modules: tuple[str, ...], what: str) -> None:
    """Fail, in one line naming the pip install to run, when a module of an optional extra cannot be
    imported; called before anything slow, such as loading a model."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise InputError(f"{what} needs the '{extra}' extra ({exc.name or name} is not installed): "
                             f"pip install 'codescaler[{extra}]'") from None
