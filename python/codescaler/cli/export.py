"""``codescaler export``: a Hugging Face reward-model folder to an engine directory (AOTInductor, ONNX or
TensorRT), loadable by every command's ``--model``; the work is in :mod:`codescaler.engine`."""

from __future__ import annotations

import argparse

from ..errors import InputError


def cmd_export(args: argparse.Namespace) -> int:
    # Imported here: codescaler.engine is export only (nothing that scores imports it; the engine-is-export-only
    # contract) and brings torch and onnx in when it runs; codescaler.tiny (tempfile, base64) resolves 'tiny'.
    from codescaler.engine.export import export_onnx

    from ..tiny import resolve_model

    args.model = resolve_model(args.model)
    if args.format == "tensorrt":
        from codescaler.engine.tensorrt import build_tensorrt

        build_tensorrt(args.model, args.out, dtype=args.dtype or "float16", max_length=args.max_length)
        return 0
    if args.format == "aoti":
        from codescaler.engine.export import export_aoti

        if args.quantize:
            raise InputError("--quantize applies to --format onnx")
        export_aoti(args.model, args.out, dtype=args.dtype, max_length=args.max_length)
        return 0
    export_onnx(args.model, args.out, dtype=args.dtype or "float32", quantize=args.quantize,
                max_length=args.max_length)
    return 0


def add_export_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a reward model to an engine directory (compiled, ONNX, or TensorRT on GPUs)",
                       description="Export a Hugging Face reward-model folder to an engine directory, loadable by "
                       "every command's --model: manifest.json, the tokenizer and the model: the decoder blocks "
                       "compiled by AOTInductor for this machine with the weights (aoti: nothing to compile at "
                       "load, no transformers imported; about 0.6 s after import torch on an idle 2-core "
                       "machine, most of it reading the tokenizer), model.onnx (onnx) or a TensorRT plan (tensorrt).",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="'tiny' or a Hugging Face reward-model folder")
    p.add_argument("--out", required=True, help="engine directory to write")
    p.add_argument("--format", default="onnx", choices=("onnx", "aoti", "tensorrt"), help="engine kind (default: onnx)")
    p.add_argument("--dtype", default=None, choices=("float32", "bfloat16", "float16"),
                   help="engine dtype (default: float32 for ONNX, float16 for TensorRT, this CPU's default "
                        "for aoti)")
    p.add_argument("--quantize", default=None, choices=("int8",), help="dynamic int8 weights (CPU)")
    p.add_argument("--max-length", type=int, default=4096, help="longest sequence the engine accepts (default 4096)")
    p.set_defaults(func=cmd_export)
