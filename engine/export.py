"""``codescaler export``: a Hugging Face reward-model folder to an engine directory: an ONNX graph
(``--format onnx``) or the compiled decoder blocks and weights (``--format aoti``), with the tokenizer
and a manifest either way."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from codescaler.errors import InputError, ModelLoadError

from codescaler.backends.engine_dir import FORMAT_VERSION, GRAPH, INPUTS, MANIFEST, OUTPUTS, EngineDir, config_hash

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

    from codescaler.template import ChatTemplate

TOKENIZER_PROBES = ("def f(x):\n    return x + 1\n", "<|im_start|>user\nhi<|im_end|>\n", "déjà vu — 数据 🚀")
# ONNX protobuf files cannot exceed 2 GB; above this the weights go to an external data file.
EXTERNAL_DATA_BYTES = 1 << 30


def _example_inputs() -> tuple[torch.Tensor, ...]:
    import torch

    b, t = 2, 8
    ids = torch.zeros((b, t), dtype=torch.long)
    pos = torch.arange(t).repeat(b, 1)
    seg = torch.zeros((b, t), dtype=torch.long)
    return ids, pos, seg, seg.clone(), torch.tensor([t - 1, 2 * t - 1])


def _score_matmul_nodes(model_path: Path) -> list[str]:
    """Names of the MatMul nodes that apply the score head (kept in float when quantizing)."""
    import onnx

    m = onnx.load(str(model_path), load_external_data=False)
    heads = {i.name for i in m.graph.initializer if i.name.startswith("score.") or "score" in i.name.split(".")}
    produced = {o: n for n in m.graph.node for o in n.output}
    names = []
    for n in m.graph.node:
        if n.op_type not in ("MatMul", "Gemm"):
            continue
        for inp in n.input:
            src = produced.get(inp)
            if inp in heads or (src is not None and src.op_type == "Transpose" and src.input[0] in heads):
                names.append(n.name)
    return names


def _manifest(model: Path, cfg: dict[str, Any], tokenizer: PreTrainedTokenizerBase, template: ChatTemplate,
              work: Path, *, dtype: str, max_length: int, architecture: str, export_seconds: float) -> dict[str, Any]:
    """The manifest fields every engine kind shares; ``files`` lists what ``work`` holds now."""
    import torch

    text_cfg = cfg.get("text_config", cfg)
    splice = template.splice
    return {
        "format_version": FORMAT_VERSION,
        "source_model": str(model.resolve()),
        "config_sha256": config_hash(model),
        "config": cfg,
        "architecture": architecture,
        "dtype": dtype,
        "pad_id": text_cfg.get("pad_token_id"),
        "eos_id": text_cfg.get("eos_token_id"),
        "pooling": {"kind": "last_non_pad", "gather_before_final_norm": True, "num_labels": 1},
        "max_length": max_length,
        "chat_template": tokenizer.chat_template,
        "template_splice": template.fast,
        # How (question, code) renders without Jinja: head + question + middle + code (its leading
        # code_lstrip characters removed) + tail, for every pair containing none of refuse, verified on the
        # probes of codescaler.template; null when no splice reproduces the template, and template_reason
        # says why.
        "template": None if splice is None else {
            "head": splice.head, "middle": splice.middle, "tail": splice.tail, "code_lstrip": splice.code_lstrip,
            "refuse": list(splice.refuse)},
        "template_reason": template.reason,
        "tokenizer": {
            "pad_id": tokenizer.pad_token_id,
            "size": len(tokenizer),
            "probes": {t: list(tokenizer(t, add_special_tokens=True)["input_ids"]) for t in TOKENIZER_PROBES},
        },
        "files": {p.name: {"size": p.stat().st_size} for p in sorted(work.iterdir()) if p.is_file()},
        "export_seconds": round(export_seconds, 2),
        "versions": {"torch": torch.__version__},
    }


def _publish(work: Path, out: Path, manifest: dict[str, Any]) -> EngineDir:
    """Write the manifest and move the finished files from ``work`` into ``out``, then open it."""
    (work / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    for p in work.iterdir():
        os.replace(p, out / p.name)
    return EngineDir.open(out)


def export_aoti(model: str | Path, out: str | Path, *, dtype: str | None = None, max_length: int = 4096,
                log: Callable[[str], None] = print) -> EngineDir:
    """Export ``model`` into engine directory ``out`` as the compiled decoder blocks (AOTInductor, for this
    machine's CPU and torch build) plus the weights at ``dtype`` (default: this CPU's default dtype)."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoTokenizer

    from codescaler.backends.decoder import Arch
    from codescaler.backends.torch_backend import (
        ROPE_INV_FREQ, load_rope, check_model_dir, default_dtype, load_state, torch_dtype)
    from codescaler.template import ChatTemplate

    from codescaler.backends.aoti import KERNELS, PACKAGE, WEIGHTS, cached_package, machine_key, read_choice

    model, out = Path(model), Path(out)
    cfg = check_model_dir(model)
    if dtype is None:
        dtype = default_dtype("cpu")[0]
    tdtype = torch_dtype(dtype)
    dtype = str(tdtype).removeprefix("torch.")
    arch = Arch.from_config(cfg, dtype, source=str(model / "config.json"))
    tokenizer = AutoTokenizer.from_pretrained(model)
    template = ChatTemplate(tokenizer, source=str(model))
    if template.splice is None:
        log(f"C++ scorer: unsupported ({template.reason}); Python runs this engine")
    rope = load_rope(cfg, model)
    state = load_state(model, tdtype, torch.device("cpu"))
    layers = int(cfg.get("text_config", cfg)["num_hidden_layers"])
    wanted = {"score.weight"} | {f"model.{n}" for n in ("embed_tokens.weight", "norm.weight")} | {
        f"model.layers.{i}.{n}" for i in range(layers) for n in arch.pre_names() + arch.post_names()}
    missing = sorted(k for k in wanted if k not in state and k.removeprefix("model.") not in state)
    if missing:
        raise ModelLoadError(f"{model}: the weights lack {', '.join(missing[:5])}")
    kept = {k: v.contiguous() for k, v in state.items() if k in wanted or "model." + k in wanted}
    # Hugging Face's rotary table for any static rope type, so a reader needs no transformers.
    kept[ROPE_INV_FREQ] = rope.inv_freq.float().contiguous()

    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".export.", dir=out))
    try:
        started = time.perf_counter()
        package = cached_package(arch, notify=log)
        choice = read_choice(package)
        shutil.copyfile(package, work / PACKAGE)
        shutil.copyfile(package.with_name(KERNELS), work / KERNELS)
        save_file(kept, str(work / WEIGHTS))
        export_seconds = time.perf_counter() - started
        shutil.copyfile(model / "config.json", work / "config.json")
        tokenizer.save_pretrained(work)
        manifest = _manifest(model, cfg, tokenizer, template, work, dtype=dtype, max_length=max_length,
                             architecture=(cfg.get("architectures") or ["?"])[0], export_seconds=export_seconds)
        manifest.update({"format": "aoti", "package": PACKAGE, "weights": WEIGHTS, "arch": arch.key(),
                         "rope": {"scaling": float(rope.scaling)}, "machine": json.loads(machine_key()),
                         # Tokens per call of the blocks, chosen by measurement when the package was built
                         # (kernels.json holds the timings): the C++ scorer tiles its passes the same way.
                         "row_tile": choice.row_tile, "kernels": KERNELS})
        engine = _publish(work, out, manifest)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    size = sum(m["size"] for m in engine.manifest["files"].values())
    log(f"exported {model} -> {out} (AOTInductor, {dtype}, {choice.row_tile}-token tiles as measured at the build) "
        f"in {export_seconds:.1f} s, {size / 1e6:.1f} MB")
    return engine


def export_onnx(model: str | Path, out: str | Path, *, dtype: str = "float32", quantize: str | None = None,
                max_length: int = 4096, opset: int | None = None,
                log: Callable[[str], None] = print) -> EngineDir:
    """Export ``model`` (a one-label ``*ForSequenceClassification`` folder) into engine directory ``out``."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from codescaler.backends.torch_backend import check_model_dir, torch_dtype
    from codescaler.template import ChatTemplate

    from .graph import PooledScorer

    model, out = Path(model), Path(out)
    cfg = check_model_dir(model)
    if quantize not in (None, "int8"):
        raise InputError(f"--quantize {quantize!r} is not supported; use int8")
    if quantize == "int8" and dtype != "float32":
        raise InputError("int8 quantization starts from a float32 graph; use --dtype float32 with --quantize int8")
    tdtype = torch_dtype(dtype)
    tokenizer = AutoTokenizer.from_pretrained(model)
    template = ChatTemplate(tokenizer, source=str(model))
    try:
        hf = AutoModelForSequenceClassification.from_pretrained(model, dtype=tdtype, attn_implementation="sdpa")
    except Exception as exc:
        raise ModelLoadError(f"{model}: cannot load the model ({exc})") from exc
    graph = PooledScorer(hf.eval()).eval()

    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".export.", dir=out))
    try:
        started = time.perf_counter()
        batch = torch.export.Dim("batch", min=1)
        tokens = torch.export.Dim("tokens", min=2)
        pooled = torch.export.Dim("pooled", min=1)
        row = {0: batch, 1: tokens}
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            logging.getLogger("torch.onnx").setLevel(logging.ERROR)
            program = torch.onnx.export(
                graph, _example_inputs(), input_names=list(INPUTS), output_names=list(OUTPUTS),
                dynamic_shapes=(row, row, row, row, {0: pooled}), dynamo=True, optimize=True,
                verbose=False, **({"opset_version": opset} if opset else {}),
            )
        params = sum(p.numel() * p.element_size() for p in hf.parameters())
        external = params > EXTERNAL_DATA_BYTES
        graph_path = work / GRAPH
        program.save(str(graph_path), external_data=external)
        if quantize == "int8":
            from onnxruntime.quantization import QuantType, quantize_dynamic

            import onnx

            fp32 = work / "fp32.onnx"
            # The exporter's recorded intermediate shapes trip the quantizer's shape inference; it
            # re-derives them from the inputs' symbolic shapes.
            proto = onnx.load(str(graph_path))
            del proto.graph.value_info[:]
            onnx.save(proto, str(fp32), save_as_external_data=external, location="fp32.onnx.data")
            for p in work.glob(GRAPH + "*"):
                p.unlink()
            quantize_dynamic(str(fp32), str(graph_path), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"],
                             per_channel=True,
                             nodes_to_exclude=_score_matmul_nodes(fp32), use_external_data_format=external)
            fp32.unlink()
            for leftover in work.glob("fp32.onnx*"):
                leftover.unlink()
        export_seconds = time.perf_counter() - started

        tokenizer.save_pretrained(work)
        manifest = _manifest(model, cfg, tokenizer, template, work, dtype=dtype, max_length=max_length,
                             architecture=type(hf).__name__, export_seconds=export_seconds)
        manifest.update({"quantization": quantize, "inputs": list(INPUTS), "outputs": list(OUTPUTS)})
        manifest["versions"]["onnx"] = __import__("onnx").__version__
        engine = _publish(work, out, manifest)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    size = sum(m["size"] for m in engine.manifest["files"].values())
    log(f"exported {model} -> {out} ({dtype}{', int8' if quantize else ''}) in {export_seconds:.1f} s, "
        f"{size / 1e6:.1f} MB")
    return engine
