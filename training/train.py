"""Bradley-Terry reward-model training on TRL's ``RewardTrainer``, fed token ids made by the scorer's encoder.

The output directory is a plain Hugging Face model folder (weights, config, tokenizer with its chat
template) that ``RewardModel.from_pretrained`` and ``codescaler export`` take unchanged; checkpoints go to
``OUT/checkpoints`` and a run continues from the newest one with ``resume=True``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from codescaler.errors import InputError

from .data import KINDS, Pair, prepare_pairs, read_pairs, tokenize_pairs

if TYPE_CHECKING:
    from transformers import (PreTrainedModel, PreTrainedTokenizerBase, Trainer, TrainerCallback, TrainerControl,
                              TrainerState, TrainingArguments)
    from trl import RewardTrainer

    from codescaler.encode import Encoder
    from codescaler.model import RewardModel

PRECISIONS = ("auto", "bf16", "fp32")
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class TrainOptions:
    eval_fraction: float = 0.1
    unaligned_ratio: float = 0.3
    epochs: float = 1.0
    max_steps: int = -1  # > 0 overrides epochs
    batch_size: int = 8
    grad_accum: int = 1
    learning_rate: float = 1e-4
    warmup_ratio: float = 0.05
    max_length: int = 4096
    center_rewards_coefficient: float | None = None
    lora_r: int = 0  # 0: full fine-tuning
    gradient_checkpointing: bool = False
    precision: str = "auto"
    train_embeddings: bool = False
    save_steps: int = 0  # 0: save (and evaluate) once per epoch
    resume: bool = False
    logging_steps: int = 10
    seed: int = 0


@dataclass
class TrainResult:
    out: Path
    global_step: int
    steps_run: int  # optimizer steps taken by this call (fewer than global_step after a resume)
    seconds: float
    losses: list[float]  # training loss at each logged step of this call
    eval_history: list[dict]  # eval metrics logged during training, per kind
    held_out: dict  # pairwise accuracy and mean margin per kind, scored by RewardModel on OUT
    held_out_base: dict  # the same for the base model, before training
    data: dict = field(default_factory=dict)


def use_bf16(precision: str) -> bool:
    """bf16 only where it is fast and supported: CUDA devices with bf16, or when asked for explicitly."""
    import torch

    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return precision == "bf16"


def scorer_encoder(model_dir: str | Path, max_length: int) -> Encoder:
    """The encoder ``RewardModel.from_pretrained(model_dir, max_length=max_length)`` scores with."""
    from transformers import AutoTokenizer

    from codescaler.encode import Encoder
    from codescaler.loader import load_tokenizer
    from codescaler.template import ChatTemplate

    tokenizer = load_tokenizer(AutoTokenizer, Path(model_dir))
    return Encoder(tokenizer, ChatTemplate(tokenizer, source=str(model_dir)), max_length)


def pairwise_metrics(model: RewardModel, pairs: Sequence[Pair]) -> dict[str, dict[str, float]]:
    """Pairwise accuracy (chosen scored strictly higher) and mean margin per kind and overall, as the
    scorer (a :class:`codescaler.RewardModel`) sees the pairs."""
    qs = [p.question for p in pairs]
    chosen = model.score_code(qs, [p.chosen for p in pairs])
    rejected = model.score_code(qs, [p.rejected for p in pairs])
    out = {}
    for kind in (*KINDS, "all"):
        idx = [i for i, p in enumerate(pairs) if kind in ("all", p.kind)]
        if idx:
            out[kind] = {"n": len(idx), "accuracy": sum(chosen[i] > rejected[i] for i in idx) / len(idx),
                         "margin": sum(chosen[i] - rejected[i] for i in idx) / len(idx)}
    return out


def _trainer_class() -> type[RewardTrainer]:
    from transformers import Trainer
    from trl import RewardTrainer

    class CodeScalerRewardTrainer(RewardTrainer):
        """TRL's trainer with eval metrics named after the eval set they come from (``eval_aligned_accuracy``)."""

        def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
            if self.model.training:
                return super().log(logs, start_time)
            prefix = next((k[: -len("_loss")] for k in logs if k.startswith("eval_") and k.endswith("_loss")), "eval")
            for key, values in self._metrics["eval"].items():
                if key != "num_tokens" and values:
                    logs[f"{prefix}_{key}"] = sum(values) / len(values)
            self._metrics["eval"].clear()
            Trainer.log(self, logs, start_time)

    return CodeScalerRewardTrainer


def _progress_callback(log: Callable[[str], None]) -> TrainerCallback:
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        def __init__(self) -> None:
            self.losses: list[float] = []
            self.evals: list[dict[str, Any]] = []
            self.steps_run = 0

        def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                        **kw: Any) -> None:
            self.steps_run += 1

        def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                   logs: dict[str, float] | None = None, **kw: Any) -> None:
            logs = logs or {}
            if "loss" in logs:
                self.losses.append(float(logs["loss"]))
                log(f"step {state.global_step}/{state.max_steps} epoch {state.epoch:.2f} loss {logs['loss']:.4f} "
                    f"accuracy {logs.get('accuracy', float('nan')):.3f} margin {logs.get('margin', float('nan')):+.3f}")
            for kind in KINDS:
                if f"eval_{kind}_accuracy" in logs:
                    row = {"step": state.global_step, "epoch": state.epoch, "kind": kind,
                           "loss": logs.get(f"eval_{kind}_loss"), "accuracy": logs[f"eval_{kind}_accuracy"],
                           "margin": logs.get(f"eval_{kind}_margin")}
                    self.evals.append(row)
                    log(f"eval {kind} @ step {row['step']} (epoch {row['epoch']:.2f}): loss {row['loss']:.4f} "
                        f"pairwise accuracy {row['accuracy']:.3f} mean margin {row['margin']:+.3f}")

    return Progress()


def _load_model(base: Path, opts: TrainOptions, log: Callable[[str], None]) -> PreTrainedModel:
    import torch
    from transformers import AutoModelForSequenceClassification

    from codescaler.backends.torch_backend import check_model_dir
    from codescaler.errors import ModelLoadError

    check_model_dir(base)
    try:
        model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1, dtype=torch.float32)
    except Exception as exc:
        raise ModelLoadError(f"{base}: cannot load the model ({exc})") from exc
    if opts.lora_r > 0:
        from peft import LoraConfig, get_peft_model

        config = LoraConfig(task_type="SEQ_CLS", r=opts.lora_r, lora_alpha=2 * opts.lora_r, lora_dropout=0.0,
                            target_modules=list(LORA_TARGETS))
        model = get_peft_model(model, config)
    elif not opts.train_embeddings:
        # The 151k-row embedding is most of a small model's parameters; freezing it keeps CPU steps cheap.
        model.get_input_embeddings().weight.requires_grad_(False)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    log(f"model {base}: {total / 1e6:.1f}M parameters, {trainable / 1e6:.2f}M trained"
        + (f" (LoRA r={opts.lora_r})" if opts.lora_r else "" if opts.train_embeddings else " (embeddings frozen)"))
    return model


def _save(trainer: Trainer, tokenizer: PreTrainedTokenizerBase, out: Path) -> None:
    model = trainer.model
    if hasattr(model, "merge_and_unload"):  # LoRA: write the merged weights, a plain HF model
        model = model.merge_and_unload()
    model.config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def train_reward_model(base: str | Path, data: str | Path | Sequence[Pair], out: str | Path, *,
                       eval_data: str | Path | Sequence[Pair] | None = None, options: TrainOptions | None = None,
                       log: Callable[[str], None] = print) -> TrainResult:
    """Train ``base`` on preference pairs and write the trained model to ``out``."""
    from trl import RewardConfig

    from codescaler.model import RewardModel

    opts = options or TrainOptions()
    base, out = Path(base), Path(out)
    started = time.perf_counter()
    pairs = read_pairs(data) if isinstance(data, (str, Path)) else list(data)
    held = read_pairs(eval_data) if isinstance(eval_data, (str, Path)) else eval_data
    train_pairs, eval_pairs, report = prepare_pairs(pairs, eval_pairs=held, unaligned_ratio=opts.unaligned_ratio,
                                                    eval_fraction=opts.eval_fraction, seed=opts.seed)
    for line in report.lines():
        log(line)
    if not train_pairs:
        raise InputError(f"{data}: no training pairs left after validation")

    encoder = scorer_encoder(base, opts.max_length)
    tokenizer = encoder.tokenizer
    train_ds = tokenize_pairs(train_pairs, encoder).shuffle(seed=opts.seed)
    eval_sets = {k: tokenize_pairs([p for p in eval_pairs if p.kind == k], encoder) for k in KINDS}
    eval_sets = {k: ds for k, ds in eval_sets.items() if len(ds)}

    held_out_base = pairwise_metrics(RewardModel.from_pretrained(base, dtype="float32", max_length=opts.max_length),
                                     eval_pairs) if eval_pairs else {}
    model = _load_model(base, opts, log)
    steps = bool(opts.save_steps)
    config = RewardConfig(
        output_dir=str(out / "checkpoints"),
        num_train_epochs=opts.epochs,
        max_steps=opts.max_steps,
        per_device_train_batch_size=opts.batch_size,
        per_device_eval_batch_size=opts.batch_size,
        gradient_accumulation_steps=opts.grad_accum,
        learning_rate=opts.learning_rate,
        warmup_steps=opts.warmup_ratio,  # a float below 1 is a share of the total steps
        lr_scheduler_type="cosine",
        logging_steps=opts.logging_steps,
        eval_strategy=("steps" if steps else "epoch") if eval_sets else "no",
        eval_steps=opts.save_steps or None,
        save_strategy="steps" if steps else "epoch",
        save_steps=opts.save_steps or 500,
        save_total_limit=2,
        bf16=use_bf16(opts.precision),
        gradient_checkpointing=opts.gradient_checkpointing,
        center_rewards_coefficient=opts.center_rewards_coefficient,
        max_length=None,  # the encoder already truncated on the right, as the scorer does
        report_to=[],
        seed=opts.seed,
        dataloader_num_workers=0,
        disable_tqdm=True,
        save_only_model=False,
    )
    progress = _progress_callback(log)
    trainer = _trainer_class()(model=model, args=config, train_dataset=train_ds,
                               eval_dataset=eval_sets or None, processing_class=tokenizer, callbacks=[progress])
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # Progress prints one line per log instead of raw dicts
    resume = None
    if opts.resume:
        from transformers.trainer_utils import get_last_checkpoint

        ckpt_dir = out / "checkpoints"
        resume = get_last_checkpoint(str(ckpt_dir)) if ckpt_dir.is_dir() else None
        log(f"resuming from {resume}" if resume else "no checkpoint to resume from; starting fresh")
    trainer.train(resume_from_checkpoint=resume)
    _save(trainer, tokenizer, out)
    trained = RewardModel.from_pretrained(out, dtype="float32", max_length=opts.max_length)
    held_out = pairwise_metrics(trained, eval_pairs) if eval_pairs else {}
    for kind, m in held_out.items():
        log(f"held-out {kind}: pairwise accuracy {m['accuracy']:.3f} "
            f"(base model {held_out_base[kind]['accuracy']:.3f}) over {m['n']} pairs, mean margin {m['margin']:+.3f}")
    result = TrainResult(out, trainer.state.global_step, progress.steps_run, time.perf_counter() - started,
                         progress.losses, progress.evals, held_out, held_out_base, asdict(report))
    summary = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(result).items()}
    (out / "training_summary.json").write_text(json.dumps({**summary, "options": asdict(opts)}, indent=1))
    log(f"wrote {out} ({trainer.state.global_step} steps, {result.seconds:.0f} s)")
    return result
