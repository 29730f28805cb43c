"""``RewardModel``: extraction, template, tokenization, planning, a backend's forward pass and shaping."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Literal, Sequence

from .backends.layout import padded

from . import options as opts
from . import reward_cache as rcache
from .encode import Encoder
from .errors import InputError, ModelLoadError
from .extract import extract_batch
from .plan import plan
from .shape import shape
from .template import ChatTemplate

if TYPE_CHECKING:
    import torch

BACKENDS = opts.BACKENDS


@dataclass(frozen=True)
class Reward:
    """One response's reward. ``raw_score`` is None when the model was not run (no valid code);
    ``truncated`` says the conversation exceeded ``max_length`` and the model saw only part of it."""

    reward: float
    raw_score: float | None
    code: str
    status: str
    truncated: bool = False

    def as_dict(self) -> dict[str, Any]:
        """The fields every entry point writes (CLI and Ray Data rows, server answers); not ``code``."""
        return {"reward": self.reward, "raw_score": self.raw_score, "status": self.status,
                "truncated": self.truncated}


def best_index(rewards: Sequence[float]) -> int:
    """Best-of-N's pick: the index of the highest reward, ties to the earliest candidate."""
    return max(range(len(rewards)), key=lambda i: (rewards[i], -i))


def regroup(flat: Sequence[Any], sizes: Iterable[int]) -> list[list[Any]]:
    """Flat results cut back into consecutive groups of the given sizes (one group per question)."""
    out, at = [], 0
    for n in sizes:
        out.append(list(flat[at:at + n]))
        at += n
    return out


@dataclass(frozen=True)
class BestOfN:
    """The winner of a Best-of-N pick: ties go to the earliest candidate."""

    index: int
    rewards: list[float]
    details: list[Reward]


def checked_strings(name: str, values) -> list[str]:
    if isinstance(values, str) or not hasattr(values, "__iter__"):
        raise TypeError(f"{name} must be a sequence of str, got {type(values).__name__}")
    values = list(values)
    for i, v in enumerate(values):
        if not isinstance(v, str):
            raise TypeError(f"{name}[{i}] must be str, got {type(v).__name__}")
    return values


def lone_surrogate(text: str) -> int | None:
    """Index of the first lone surrogate in ``text`` (e.g. from a JSON "\\ud800" escape), else None.
    Such text is not valid Unicode: it cannot be encoded as UTF-8, so no tokenizer or JSON body takes it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start
    return None


def check_unicode(where: str, text: str) -> None:
    """The one rule for odd text: text that is not valid Unicode (a lone surrogate anywhere in a question
    or a response, inside its code block or not) is never scored. The API raises :class:`InputError`
    naming the field and index before the model sees it; the server answers 422 naming the field;
    ``codescaler score`` (and ``--ray``) answer that line with status ``input_error``; the C++ example
    does the same. Scoring it instead would give one text several answers: it cannot be tokenized, and
    whether its code "parses" would depend on where the surrogate sits."""
    at = lone_surrogate(text)
    if at is not None:
        raise InputError(f"{where} is not valid Unicode: lone surrogate {text[at]!r} at character {at}")


def check_encodable(name: str, values: list[str]) -> None:
    """:func:`check_unicode` for each of ``values``, named ``name[i]``."""
    for i, v in enumerate(values):
        check_unicode(f"{name}[{i}]", v)


def _checked_pair(i: int, question, response) -> None:
    """Pair ``i`` of a stream, checked as :func:`checked_pairs` checks lists (indices count from the stream's start)."""
    for name, v in (("questions", question), ("responses", response)):
        if not isinstance(v, str):
            raise TypeError(f"{name}[{i}] must be str, got {type(v).__name__}")
        check_unicode(f"{name}[{i}]", v)


def checked_pairs(qname: str, questions, aname: str, answers) -> tuple[list[str], list[str]]:
    qs, answers = checked_strings(qname, questions), checked_strings(aname, answers)
    if len(qs) != len(answers):
        raise InputError(f"{qname} has {len(qs)} items but {aname} has {len(answers)}")
    check_encodable(qname, qs)
    check_encodable(aname, answers)
    return qs, answers


def _quiet_transformers():
    """Silence transformers' progress bars and warnings while loading, restoring the user's settings."""
    import contextlib

    from transformers.utils import logging as hf_logging

    @contextlib.contextmanager
    def quiet():
        bar, level = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
        try:
            yield
        finally:
            hf_logging.set_verbosity(level)
            if bar:
                hf_logging.enable_progress_bar()

    return quiet()


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _auto_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer


def load_tokenizer(auto, path: Path):
    try:
        tokenizer = auto.from_pretrained(path)
    except Exception as exc:
        raise ModelLoadError(f"{path}: cannot load the tokenizer ({exc})") from exc
    # transformers warns once that a text longer than the tokenizer's model_max_length "will result in
    # indexing errors"; not here: the encoder truncates every conversation to max_length itself.
    warned = getattr(tokenizer, "deprecation_warnings", None)
    if isinstance(warned, dict):
        warned["sequence-length-is-longer-than-the-specified-maximum"] = True
    return tokenizer


class RewardModel:
    """A CodeScaler reward model ready to score. Build it with :meth:`from_pretrained`."""

    def __init__(self, backend, tokenizer, *, source: str, options: dict, template: ChatTemplate | None = None):
        self.backend = backend
        self.source = source
        self.options = options
        self.template = template or ChatTemplate(tokenizer, source=source)
        self.encoder = Encoder(tokenizer, self.template, options["max_length"], options["truncation"])
        self.reward_cache: rcache.RewardCache | None = None  # attached by from_pretrained after the warm-up
        # One small pass through every stage (tokenizer threads, compiled blocks, attention kernels), so
        # the first real call costs what later ones do.
        self.score(["warm-up"], ["```python\npass\n```"])
        self.last_plan = None

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        backend: Literal["auto", "torch", "onnx", "tensorrt"] = "auto",
        dtype: Literal["float32", "bfloat16", "float16"] | torch.dtype | None = None,
        max_length: int | None = None,
        *,
        device: str | None = None,
        providers: Sequence[Any] | None = None,
        # The options of codescaler.options.OPTIONS, by name (tests/test_model.py keeps the two in step);
        # None means the option's default.
        truncation: Literal["right", "question"] | None = None,
        policy: Literal["codescaler", "last", "best"] | None = None,
        language: Literal["python", "cpp", "java", "javascript", "go", "rust"] | None = None,
        score_empty: bool | None = None,
        share_prefix: bool | None = None,
        max_batch_tokens: int | None = None,
        max_batch_size: int | None = None,
        prefix_cache_mb: int | None = None,
        threads: int | None = None,
        compile: Literal["auto", "off"] | bool | None = None,
        reward_cache: str | None = None,
        reward_cache_entries: int | None = None,
        reward_cache_ttl: int | None = None,
    ) -> "RewardModel":
        """Load a reward model from a Hugging Face folder, an engine directory or ``"tiny"``.

        ``"tiny"`` is the embedded demo model (random weights, Qwen's real vocabulary), built once into
        the cache. A Hugging Face folder (one-label ``*ForSequenceClassification``) runs on the torch
        backend; an engine directory (made by ``codescaler export``) on the backend its kind needs: an
        ``aoti`` engine on torch, an ``onnx`` one on ONNX Runtime with ``providers`` (default CPU), a
        TensorRT plan on TensorRT when a GPU is present; its dtype is fixed at export. Every other keyword
        is an option of :mod:`codescaler.options` (the CLI's flags carry the same names); None, or leaving
        it out, means the option's default:

        - ``dtype``: None picks bfloat16 on CUDA and on CPUs that declare native bfloat16
          (avx512_bf16, amx_bf16), float32 elsewhere; the same choice on every run on one machine.
          ``dtype="float32"`` gives Hugging Face-exact scores. ``model.dtype`` tells what runs.
        - ``max_length``: truncation length, 4096 by default (the RL recipe's) or the engine's own;
          ``truncation``: ``"right"`` (upstream's) or ``"question"`` (shorten the question so the code
          is seen whole). Each :class:`Reward` says whether its input was truncated.
        - ``policy``, ``language``, ``score_empty``: extraction defaults, overridable per call.
        - ``share_prefix``, ``max_batch_tokens``, ``max_batch_size``: how the planner batches.
        - ``threads``: CPU threads for the model (``torch.set_num_threads`` is process-wide) and for
          extraction. ``compile`` (torch on CPU): ``"auto"`` runs the decoder blocks compiled by AOTInductor, built once per machine and layer shape and cached; ``"off"`` runs them eagerly.
        """
        from .backends.engine_dir import EngineDir

        from .tiny import resolve_model

        named = dict(truncation=truncation, policy=policy, language=language, score_empty=score_empty,
                     share_prefix=share_prefix, max_batch_tokens=max_batch_tokens, max_batch_size=max_batch_size,
                     prefix_cache_mb=prefix_cache_mb, threads=threads, compile=compile,
                     reward_cache=reward_cache, reward_cache_entries=reward_cache_entries,
                     reward_cache_ttl=reward_cache_ttl)
        given = {"backend": backend, "dtype": None if dtype is None else str(dtype).removeprefix("torch."),
                 "max_length": max_length, **{k: v for k, v in named.items() if v is not None}}
        checked = {**opts.defaults(), **opts.checked(given)}
        backend, threads = checked["backend"], checked["threads"]
        store = rcache.open_store(checked)  # before the load: a bad Redis URL fails at once
        path = resolve_model(path)
        if EngineDir.is_engine(path):
            from .backends.onnx_backend import OnnxBackend

            engine = EngineDir.open(path)
            kind = engine.kind
            allowed = ("auto", "torch") if kind == "aoti" else ("auto", "onnx", "tensorrt")
            if backend not in allowed:
                raise InputError(f"{path} is an engine directory ({kind}); it runs on backend "
                                 f"{allowed[1]!r}, not {backend!r}")
            if backend == "auto" and "tensorrt" in engine.manifest and _cuda_available():
                backend = "tensorrt"
            if checked["dtype"] is not None and checked["dtype"] != engine.manifest["dtype"]:
                raise InputError(f"{path}: the engine was exported as {engine.manifest['dtype']}; "
                                 f"dtype={checked['dtype']!r} needs another export")
            if max_length is None:
                checked["max_length"] = engine.max_length
            elif max_length > engine.max_length:
                raise InputError(f"max_length {max_length} exceeds the engine's {engine.max_length} "
                                 f"({path / 'manifest.json'}); re-export with --max-length {max_length}")
            template = None
            recorded = engine.manifest.get("template")
            # The recorded splice stands in for Jinja only when it covers every pair; a guarded one
            # (refuse strings) needs the tokenizer's template for the pairs it refuses.
            if kind == "aoti" and recorded and not recorded.get("refuse"):
                from .encode import RustTokenizer
                from .template import Splice

                tokenizer = RustTokenizer(path / "tokenizer.json", engine.manifest["tokenizer"]["pad_id"])
                template = ChatTemplate(None, splice=Splice(**recorded))
            else:
                tokenizer = load_tokenizer(_auto_tokenizer(), path)
            engine.check_tokenizer(tokenizer)
            if kind == "aoti":
                from .backends.torch_backend import TorchBackend

                engine.check_machine()
                if threads is not None:
                    import torch

                    torch.set_num_threads(threads)
                runner = TorchBackend.from_engine(engine, prefix_cache_mb=checked["prefix_cache_mb"])
            elif backend == "tensorrt":
                from .backends.tensorrt_backend import TensorRTBackend

                runner = TensorRTBackend(engine)
            else:
                runner = OnnxBackend(engine, providers=providers, threads=threads)
        else:
            from .backends.torch_backend import TorchBackend, check_model_dir

            if backend in ("onnx", "tensorrt"):
                raise InputError(f"{path} is a Hugging Face folder; backend {backend!r} needs an engine directory "
                                 f"(codescaler export --model {path} --out ENGINE_DIR)")
            check_model_dir(path)
            tokenizer = load_tokenizer(_auto_tokenizer(), path)
            if threads is not None:
                import torch

                torch.set_num_threads(threads)
            with _quiet_transformers():
                runner = TorchBackend(path, dtype=dtype, device=device, compile=checked["compile"],
                                      prefix_cache_mb=checked["prefix_cache_mb"])
        checked["backend"] = runner.name
        checked["dtype"] = runner.dtype
        checked["max_length"] = checked["max_length"] or 4096
        model = cls(runner, tokenizer, source=str(path), options=checked,
                    template=template if EngineDir.is_engine(path) else None)
        model.reward_cache = rcache.attach(store, path, runner)  # after the warm-up: counters start at 0
        return model

    @property
    def max_length(self) -> int:
        return self.encoder.max_length

    @property
    def dtype(self) -> str:
        """The dtype the model actually runs in (``"bfloat16"``, ``"float32"``, ``"float32+int8"``...)."""
        return self.backend.dtype

    @property
    def backend_name(self) -> str:
        """The backend actually used: ``"torch"``, ``"onnx"`` or ``"tensorrt"``."""
        return self.backend.name

    @property
    def prefix_cache(self):
        """The question cache (``backends.decoder.PrefixCache``: ``hits``, ``misses``, ``bytes``...), or None
        when the backend has none or ``prefix_cache_mb=0``."""
        decoder = getattr(self.backend, "decoder", None)
        return getattr(decoder, "prefix_cache", None)

    @property
    def max_batch_tokens(self) -> int:
        return self.options["max_batch_tokens"]

    @property
    def max_batch_size(self) -> int:
        return self.options["max_batch_size"]

    @property
    def share_prefix(self) -> bool:
        return self.options["share_prefix"]

    def describe(self) -> str:
        """One line naming the model, backend, dtype (and why) and device, for logs and summaries."""
        reason = getattr(self.backend, "dtype_reason", None)
        device = getattr(self.backend, "device", "cpu")
        dtype = f"{self.dtype} ({reason})" if reason else self.dtype
        return f"{self.source} on {self.backend_name}, {dtype}, {device}, max_length {self.max_length}"

    def _call(self, given: dict) -> dict:
        """Per-call options: the model's defaults, overridden by what the call passed (None: default)."""
        return {**{n: self.options[n] for n in opts.PER_CALL},
                **opts.checked({k: v for k, v in given.items() if v is not None}, names=opts.PER_CALL)}

    def _raw_scores(self, questions: list[str], codes: list[str], run: list[bool],
                    truncation: str | None = None) -> tuple[list[float | None], list[bool]]:
        """Raw scores of the (question, code) pairs whose ``run`` flag is set (None elsewhere), and
        whether each run pair was truncated."""
        idx = [i for i, r in enumerate(run) if r]
        encoded, over, cuts = self.encoder.encode_split([questions[i] for i in idx], [codes[i] for i in idx],
                                                        truncation)
        seqs: list[list[int] | None] = [None] * len(questions)
        bounds = [0] * len(questions)
        truncated = [False] * len(questions)
        for i, s, o, b in zip(idx, encoded, over, cuts):
            seqs[i] = s
            truncated[i] = o
            bounds[i] = b
        # The reward cache: exact only while the backend's scores do not depend on their batch.
        cache = self.reward_cache if getattr(getattr(self.backend, "decoder", None), "invariant", False) else None
        keys: dict[int, bytes] = {}
        cached: dict[bytes, float] = {}
        if cache is not None and idx:
            keys = {i: cache.key(seqs[i], bounds[i]) for i in idx}
            cached = cache.get(list(dict.fromkeys(keys.values())))
            for i, k in keys.items():
                if k in cached:
                    seqs[i] = None  # not planned: no forward pass
        packs = getattr(self.backend, "packs", False)
        p = plan(seqs, bounds, self.backend.pad_id, packed=packs, share=self.share_prefix,
                 max_batch_tokens=self.max_batch_tokens, max_batch_size=self.max_batch_size)
        self.last_plan = p
        scores = [0.0] * len(p.seqs)
        for pack in p.packs:
            from .backends.decoder import Unit

            got = self.backend.score_units([
                Unit(p.seqs[u.members[0]][:u.prefix], [p.seqs[k][u.prefix:] for k in u.members],
                     [p.pools[k] - u.prefix for k in u.members]) for u in pack])
            for k, v in zip((k for u in pack for k in u.members), got):
                scores[k] = v
        for batch in p.batches:
            got = self.backend.score_layout(padded([p.seqs[k] for k in batch], [p.pools[k] for k in batch],
                                                   self.backend.pad_id))
            for k, v in zip(batch, got.tolist()):
                scores[k] = v
        raws = [scores[k] if k >= 0 else None for k in p.slot]
        if cache is not None:
            cache.put({k: raws[i] for i, k in keys.items() if k not in cached})
            for i, k in keys.items():
                if k in cached:
                    raws[i] = cached[k]
        return raws, truncated

    def score(self, questions: Sequence[str], responses: Sequence[str], *, policy: str | None = None,
              language: str | None = None, score_empty: bool | None = None,
              truncation: str | None = None) -> list[Reward]:
        """One :class:`Reward` per response. Responses without valid code get 0.0 without a forward pass;
        ``score_empty=True`` runs the model on their empty answer anyway (as upstream does) to fill
        ``raw_score``; the reward stays 0.0. Options left at None take the model's defaults."""
        o = self._call(dict(policy=policy, language=language, score_empty=score_empty, truncation=truncation))
        questions, responses = checked_pairs("questions", questions, "responses", responses)
        found = extract_batch(responses, policy=o["policy"], language=o["language"], threads=self.options["threads"])
        codes = [e.code for e in found]
        raws, truncated = self._raw_scores(questions, codes, [e.valid or o["score_empty"] for e in found],
                                           o["truncation"])
        return [
            Reward(shape(raw, e.valid) if e.valid else 0.0, raw, e.code, e.status, t)
            for e, raw, t in zip(found, raws, truncated)
        ]

    def score_code(self, questions: Sequence[str], codes: Sequence[str], *,
                   truncation: str | None = None) -> list[float]:
        """Raw scores of (question, code) pairs exactly as given, as in the model card's usage."""
        o = self._call(dict(truncation=truncation))
        questions, codes = checked_pairs("questions", questions, "codes", codes)
        return self._raw_scores(questions, codes, [True] * len(codes), o["truncation"])[0]

    def score_groups(self, questions: Sequence[str], responses_per_question: Sequence[Sequence[str]],
                     **options) -> list[list[Reward]]:
        """Rewards for groups of responses, one group per question (a GRPO step); options as :meth:`score`."""
        questions = checked_strings("questions", questions)
        if isinstance(responses_per_question, str) or len(responses_per_question) != len(questions):
            raise InputError(f"responses_per_question must hold one list per question ({len(questions)})")
        groups = [checked_strings(f"responses_per_question[{i}]", g) for i, g in enumerate(responses_per_question)]
        check_encodable("questions", questions)
        for i, g in enumerate(groups):
            check_encodable(f"responses_per_question[{i}]", g)
        flat = self.score([q for q, g in zip(questions, groups) for _ in g], [r for g in groups for r in g],
                          **options)
        return regroup(flat, map(len, groups))

    def score_iter(self, pairs: Iterable[tuple[str, str]], *, chunk_items: int = 512,
                   chunk_chars: int = 4_000_000, **options) -> Iterator[Reward]:
        """Stream rewards for an iterable of (question, response) pairs, in input order.

        Pairs are scored in chunks of at most ``chunk_items`` pairs and about ``chunk_chars`` characters,
        so memory stays flat however long the stream; a chunk ends early where the question changes
        once it is half full, so GRPO groups stay together and keep sharing their question. Options as
        :meth:`score`. A pair that cannot be scored raises, named by its place in the stream
        (``responses[n]``), after the rewards of the chunks before it.
        """
        self._call(options)  # fail on a bad option before consuming the stream
        qs: list[str] = []
        rs: list[str] = []
        chars = 0
        for n, (q, r) in enumerate(pairs):
            full = len(qs) >= chunk_items or chars >= chunk_chars
            boundary = len(qs) >= chunk_items // 2 and qs and q != qs[-1]
            if full or boundary:
                yield from self.score(qs, rs, **options)
                qs, rs, chars = [], [], 0
            _checked_pair(n, q, r)
            qs.append(q)
            rs.append(r)
            chars += len(q) + len(r)
        if qs:
            yield from self.score(qs, rs, **options)

    def best_of_n(self, question: str, candidates: Sequence[str], **options) -> BestOfN:
        """Score every candidate response for one question and pick the highest reward (ties to the
        earliest); options as :meth:`score`."""
        if not isinstance(question, str):
            raise TypeError(f"question must be str, got {type(question).__name__}")
        candidates = checked_strings("candidates", candidates)
        if not candidates:
            raise InputError("best_of_n needs at least one candidate")
        check_unicode("question", question)
        check_encodable("candidates", candidates)
        details = self.score([question] * len(candidates), candidates, **options)
        rewards = [d.reward for d in details]
        return BestOfN(best_index(rewards), rewards, details)
