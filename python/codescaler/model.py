"""``RewardModel``: extraction, template, tokenization, planning, a backend's forward pass and shaping."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from codescaler.engine.layout import padded

from .encode import Encoder
from .errors import InputError, ModelLoadError
from .extract import extract_batch
from .plan import plan
from .shape import shape
from .template import ChatTemplate

BACKENDS = ("auto", "torch", "onnx", "tensorrt")


@dataclass(frozen=True)
class Reward:
    """One response's reward. ``raw_score`` is None when the model was not run (no valid code)."""

    reward: float
    raw_score: float | None
    code: str
    status: str


@dataclass(frozen=True)
class BestOfN:
    """The winner of a Best-of-N pick: ties go to the earliest candidate."""

    index: int
    rewards: list[float]
    details: list[Reward]


def _strings(name: str, values) -> list[str]:
    if isinstance(values, str) or not hasattr(values, "__iter__"):
        raise TypeError(f"{name} must be a sequence of str, got {type(values).__name__}")
    values = list(values)
    for i, v in enumerate(values):
        if not isinstance(v, str):
            raise TypeError(f"{name}[{i}] must be str, got {type(v).__name__}")
    return values


def _pairs(qname: str, questions, aname: str, answers) -> tuple[list[str], list[str]]:
    qs, answers = _strings(qname, questions), _strings(aname, answers)
    if len(qs) != len(answers):
        raise InputError(f"{qname} has {len(qs)} items but {aname} has {len(answers)}")
    return qs, answers


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _load_tokenizer(auto, path: Path):
    try:
        return auto.from_pretrained(path)
    except Exception as exc:
        raise ModelLoadError(f"{path}: cannot load the tokenizer ({exc})") from exc


class RewardModel:
    """A CodeScaler reward model ready to score. Build it with :meth:`from_pretrained`."""

    def __init__(self, backend, tokenizer, *, max_length: int, max_batch_tokens: int, max_batch_size: int,
                 source: str, share_prefix: bool = True, truncation: str = "right"):
        self.backend = backend
        self.template = ChatTemplate(tokenizer, source=source)
        self.encoder = Encoder(tokenizer, self.template, max_length, truncation)
        self.max_batch_tokens = max_batch_tokens
        self.max_batch_size = max_batch_size
        self.share_prefix = share_prefix
        self.last_plan = None

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        backend: str = "auto",
        dtype=None,
        max_length: int | None = None,
        *,
        device: str | None = None,
        providers=None,
        threads: int | None = None,
        max_batch_tokens: int = 8192,
        max_batch_size: int = 64,
        share_prefix: bool = True,
        truncation: str = "right",
        compile: bool = False,
    ) -> "RewardModel":
        """Load a reward model from a Hugging Face folder or an engine directory.

        A Hugging Face folder (one-label ``*ForSequenceClassification``) runs on the torch backend;
        ``dtype=None`` picks bfloat16 on CUDA and on CPUs whose measured bfloat16 matmuls are at least
        twice as fast as float32 (AVX-512 BF16), float32 elsewhere; pass ``dtype="float32"`` for
        Hugging Face-exact scores. An engine directory (made by
        ``codescaler export``) runs on ONNX Runtime with ``providers`` (default CPU) and ``threads``
        (default: the cores this process may use); its dtype is fixed at export. ``max_length`` is the
        right-truncation length: 4096 by default (the RL recipe's), or the engine's own. Batches hold at
        most ``max_batch_tokens`` padded tokens and ``max_batch_size`` sequences. ``share_prefix=False``
        scores every answer as a whole sequence instead of reusing its question's computation.
        ``truncation="question"`` shortens long questions so the code is always seen whole; the default
        ``"right"`` is upstream's. ``compile=True`` (torch backend) fuses the elementwise work of
        shared-question scoring with ``torch.compile``: a one-off compile of tens of seconds, then a
        large speed-up on CPU.
        """
        from transformers import AutoTokenizer

        from codescaler.engine.format import EngineDir

        if backend not in BACKENDS:
            raise InputError(f"backend {backend!r} is not available; choose one of {', '.join(BACKENDS)}")
        path = Path(path)
        if EngineDir.is_engine(path):
            from .backends.onnx_backend import OnnxBackend

            if backend not in ("auto", "onnx", "tensorrt"):
                raise InputError(f"{path} is an engine directory; it runs on backend 'onnx', not {backend!r}")
            engine = EngineDir.open(path)
            if backend == "auto" and "tensorrt" in engine.manifest and _cuda_available():
                backend = "tensorrt"
            if dtype is not None and str(dtype).removeprefix("torch.") != engine.manifest["dtype"]:
                raise InputError(f"{path}: the engine was exported as {engine.manifest['dtype']}; "
                                 f"dtype={dtype!r} needs another export")
            if max_length is None:
                max_length = engine.max_length
            elif max_length > engine.max_length:
                raise InputError(f"max_length {max_length} exceeds the engine's {engine.max_length} "
                                 f"({path / 'manifest.json'}); re-export with --max-length {max_length}")
            tokenizer = _load_tokenizer(AutoTokenizer, path)
            engine.check_tokenizer(tokenizer)
            if backend == "tensorrt":
                from codescaler.engine.tensorrt import TensorRTBackend

                runner = TensorRTBackend(engine)
            else:
                runner = OnnxBackend(engine, providers=providers, threads=threads)
        else:
            from .backends.torch_backend import TorchBackend, check_model_dir

            if backend in ("onnx", "tensorrt"):
                raise InputError(f"{path} is a Hugging Face folder; backend {backend!r} needs an engine directory "
                                 f"(codescaler export --model {path} --out ENGINE_DIR)")
            check_model_dir(path)
            tokenizer = _load_tokenizer(AutoTokenizer, path)
            runner = TorchBackend(path, dtype=dtype, device=device, compile=compile)
        return cls(runner, tokenizer, max_length=max_length or 4096, max_batch_tokens=max_batch_tokens,
                   max_batch_size=max_batch_size, source=str(path), share_prefix=share_prefix,
                   truncation=truncation)

    @property
    def max_length(self) -> int:
        return self.encoder.max_length

    def _raw_scores(self, questions: list[str], codes: list[str], run: list[bool]) -> list[float | None]:
        """Raw scores of the (question, code) pairs whose ``run`` flag is set; None elsewhere."""
        idx = [i for i, r in enumerate(run) if r]
        encoded = self.encoder.encode([questions[i] for i in idx], [codes[i] for i in idx])
        seqs: list[list[int] | None] = [None] * len(questions)
        for i, s in zip(idx, encoded):
            seqs[i] = s
        p = plan(seqs, questions, self.backend.pad_id, share=self.share_prefix and self.backend.shares_prefix,
                 max_batch_tokens=self.max_batch_tokens, max_batch_size=self.max_batch_size)
        self.last_plan = p
        scores = [0.0] * len(p.seqs)
        for group in p.shared:
            state = self.backend.prefill(group.prefix)
            n = len(group.prefix)
            for batch in group.batches:
                got = self.backend.score_after_prefix(state, [p.seqs[k][n:] for k in batch],
                                                      [p.pools[k] - n for k in batch])
                for k, v in zip(batch, got):
                    scores[k] = v
        for batch in p.batches:
            got = self.backend.score_layout(padded([p.seqs[k] for k in batch], [p.pools[k] for k in batch],
                                                   self.backend.pad_id))
            for k, v in zip(batch, got.tolist()):
                scores[k] = v
        return [scores[k] if k >= 0 else None for k in p.slot]

    def score(self, questions: Sequence[str], responses: Sequence[str], *, policy: str = "codescaler",
              score_empty: bool = False) -> list[Reward]:
        """One :class:`Reward` per response. Responses without valid code get 0.0 without a forward pass;
        ``score_empty=True`` runs the model on their empty answer anyway (as upstream does) to fill
        ``raw_score``; the reward stays 0.0."""
        questions, responses = _pairs("questions", questions, "responses", responses)
        found = extract_batch(responses, policy=policy)
        codes = [e.code for e in found]
        raws = self._raw_scores(questions, codes, [e.valid or score_empty for e in found])
        return [
            Reward(shape(raw, e.valid) if e.valid else 0.0, raw, e.code, e.status)
            for e, raw in zip(found, raws)
        ]

    def score_code(self, questions: Sequence[str], codes: Sequence[str]) -> list[float]:
        """Raw scores of (question, code) pairs exactly as given, as in the model card's usage."""
        questions, codes = _pairs("questions", questions, "codes", codes)
        return self._raw_scores(questions, codes, [True] * len(codes))

    def score_groups(self, questions: Sequence[str], responses_per_question: Sequence[Sequence[str]], *,
                     policy: str = "codescaler") -> list[list[Reward]]:
        """Rewards for groups of responses, one group per question (a GRPO step)."""
        questions = _strings("questions", questions)
        if isinstance(responses_per_question, str) or len(responses_per_question) != len(questions):
            raise InputError(f"responses_per_question must hold one list per question ({len(questions)})")
        groups = [_strings(f"responses_per_question[{i}]", g) for i, g in enumerate(responses_per_question)]
        flat = self.score([q for q, g in zip(questions, groups) for _ in g], [r for g in groups for r in g],
                          policy=policy)
        out, at = [], 0
        for g in groups:
            out.append(flat[at:at + len(g)])
            at += len(g)
        return out

    def score_iter(self, pairs: Iterable[tuple[str, str]], *, policy: str = "codescaler",
                   chunk_items: int = 512, chunk_chars: int = 4_000_000) -> Iterator[Reward]:
        """Stream rewards for an iterable of (question, response) pairs, in input order.

        Pairs are scored in chunks of at most ``chunk_items`` pairs and about ``chunk_chars`` characters,
        so memory stays flat however long the stream; a chunk ends early where the question changes
        once it is half full, so GRPO groups stay together and keep sharing their question.
        """
        qs: list[str] = []
        rs: list[str] = []
        chars = 0
        for q, r in pairs:
            full = len(qs) >= chunk_items or chars >= chunk_chars
            boundary = len(qs) >= chunk_items // 2 and qs and q != qs[-1]
            if full or boundary:
                yield from self.score(qs, rs, policy=policy)
                qs, rs, chars = [], [], 0
            qs.append(q)
            rs.append(r)
            chars += (len(q) if isinstance(q, str) else 0) + (len(r) if isinstance(r, str) else 0)
        if qs:
            yield from self.score(qs, rs, policy=policy)

    def best_of_n(self, question: str, candidates: Sequence[str], *, policy: str = "codescaler") -> BestOfN:
        """Score every candidate response for one question and pick the highest reward."""
        if not isinstance(question, str):
            raise TypeError(f"question must be str, got {type(question).__name__}")
        candidates = _strings("candidates", candidates)
        if not candidates:
            raise InputError("best_of_n needs at least one candidate")
        details = self.score([question] * len(candidates), candidates, policy=policy)
        rewards = [d.reward for d in details]
        best = max(range(len(rewards)), key=lambda i: (rewards[i], -i))
        return BestOfN(best, rewards, details)
