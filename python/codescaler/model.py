"""``RewardModel`` composes the stages: extract -> encode (template, tokenizer) -> plan -> backend -> shape.
What a path loads into (backend, tokenizer, template) is :mod:`codescaler.loader`'s business; the results'
conversion (:meth:`Reward.as_dict`), regrouping (:func:`regroup`) and Best-of-N's pick (:func:`best_index`)
live here once for every entry point."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Literal, Mapping, Sequence

from . import options as opts
from . import reward_cache as rcache
from .backends.base import Backend, QuestionCache, Unit
from .encode import Encoder
from .errors import InputError
from .extract import extract_batch
from .loader import load
from .plan import Plan, plan
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
class CallStats:
    """What one scoring call ran, returned with its rewards (:meth:`RewardModel.score_with_stats`)."""

    item_tokens: list[int]  # per item, its sequence's tokens; 0 when not run (no valid code, or a cached score)
    computed_tokens: int    # tokens the forward passes ran, padding included
    padded_tokens: int      # of those, padding (padded batches: ONNX Runtime, TensorRT)
    passes: int             # forward passes
    shared_prefixes: int    # questions run once for several answers
    reward_cache_hits: int  # items whose raw score came from the reward cache


def _passes(p: Plan) -> Iterator[tuple[list[int], list[Unit]]]:
    """Each forward pass of ``p`` as the backend takes it (units) and the plan's sequences its scores are
    of: a packed pass's units, or a padded batch's sequences as units without a prefix."""
    for pack in p.packs:
        yield ([k for u in pack for k in u.members],
               [Unit(p.seqs[u.members[0]][:u.prefix], [p.seqs[k][u.prefix:] for k in u.members],
                     [p.pools[k] - u.prefix for k in u.members]) for u in pack])
    for batch in p.batches:
        yield batch, [Unit((), [p.seqs[k]], [p.pools[k]]) for k in batch]


@dataclass(frozen=True)
class BestOfN:
    """The winner of a Best-of-N pick: ties go to the earliest candidate."""

    index: int
    rewards: list[float]
    details: list[Reward]


def checked_strings(name: str, values: Iterable[str]) -> list[str]:
    """``values`` as a list, each checked to be a str (a TypeError naming ``name[i]`` otherwise)."""
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


def _checked_pair(i: int, question: str, response: str) -> None:
    """Pair ``i`` of a stream, checked as :func:`checked_pairs` checks lists (indices count from the stream's start)."""
    for name, v in (("questions", question), ("responses", response)):
        if not isinstance(v, str):
            raise TypeError(f"{name}[{i}] must be str, got {type(v).__name__}")
        check_unicode(f"{name}[{i}]", v)


def checked_pairs(qname: str, questions: Sequence[str], aname: str, answers: Sequence[str]) -> tuple[list[str], list[str]]:
    """Two lists of str of the same length, valid Unicode, named ``qname`` and ``aname`` in errors."""
    qs, answers = checked_strings(qname, questions), checked_strings(aname, answers)
    if len(qs) != len(answers):
        raise InputError(f"{qname} has {len(qs)} items but {aname} has {len(answers)}")
    check_encodable(qname, qs)
    check_encodable(aname, answers)
    return qs, answers


class RewardModel:
    """A CodeScaler reward model ready to score. Build it with :meth:`from_pretrained`."""

    def __init__(self, backend: Backend, tokenizer: Any, *, source: str, options: dict[str, Any],
                 template: ChatTemplate | None = None):
        self.backend = backend
        self.source = source
        self.options = options
        self.template = template or ChatTemplate(tokenizer, source=source)
        self.encoder = Encoder(tokenizer, self.template, options["max_length"], options["truncation"])
        self.reward_cache: rcache.RewardCache | None = None  # attached by from_pretrained after the warm-up
        # One small pass through every stage (tokenizer threads, compiled blocks, attention kernels), so
        # the first real call costs what later ones do.
        self.score(["warm-up"], ["```python\npass\n```"])

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
        named = dict(max_length=max_length, truncation=truncation, policy=policy, language=language,
                     score_empty=score_empty, share_prefix=share_prefix, max_batch_tokens=max_batch_tokens,
                     max_batch_size=max_batch_size, prefix_cache_mb=prefix_cache_mb, threads=threads,
                     compile=compile, reward_cache=reward_cache, reward_cache_entries=reward_cache_entries,
                     reward_cache_ttl=reward_cache_ttl)
        given = {"backend": backend, "dtype": None if dtype is None else str(dtype).removeprefix("torch."),
                 **{k: v for k, v in named.items() if v is not None}}
        loaded = load(path, given, dtype=dtype, device=device, providers=providers)
        model = cls(loaded.backend, loaded.tokenizer, source=str(loaded.path), options=loaded.options,
                    template=loaded.template)
        model.reward_cache = rcache.attach(loaded.store, loaded.path, loaded.backend)  # after the warm-up:
        return model                                                                     # counters start at 0

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
    def prefix_cache(self) -> QuestionCache | None:
        """The question cache (``backends.decoder.PrefixCache``: ``hits``, ``misses``, ``bytes``...), or None
        when the backend has none or ``prefix_cache_mb=0``."""
        return self.backend.prefix_cache

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
        reason = self.backend.dtype_reason
        dtype = f"{self.dtype} ({reason})" if reason else self.dtype
        return f"{self.source} on {self.backend_name}, {dtype}, {self.backend.device}, max_length {self.max_length}"

    def _call(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """Per-call options: the model's defaults, overridden by what the call passed (None: default)."""
        return opts.per_call(given, self.options)

    def _sequences(self, questions: list[str], codes: list[str], run: list[bool],
                   truncation: str) -> tuple[list[list[int] | None], list[int], list[bool]]:
        """Per pair: its token ids (None when its ``run`` flag is not set), its question/answer boundary
        and whether it was truncated."""
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
        return seqs, bounds, truncated

    def _plan(self, seqs: Sequence[Sequence[int] | None], bounds: Sequence[int]) -> Plan:
        return plan(seqs, bounds, self.backend.pad_id, packed=self.backend.packs, share=self.share_prefix,
                    max_batch_tokens=self.max_batch_tokens, max_batch_size=self.max_batch_size)

    def _raw_scores(self, questions: list[str], codes: list[str], run: list[bool],
                    truncation: str) -> tuple[list[float | None], list[bool], CallStats]:
        """Raw scores of the (question, code) pairs whose ``run`` flag is set (None elsewhere), whether
        each run pair was truncated, and what the call ran."""
        seqs, bounds, truncated = self._sequences(questions, codes, run, truncation)
        # The reward cache: exact only while the backend's scores do not depend on their batch.
        cache = self.reward_cache if self.backend.invariant else None
        keys: dict[int, bytes] = {}
        cached: dict[bytes, float] = {}
        if cache is not None:
            keys = {i: cache.key(s, bounds[i]) for i, s in enumerate(seqs) if s is not None}
            if keys:
                cached = cache.get(list(dict.fromkeys(keys.values())))
            for i, k in keys.items():
                if k in cached:
                    seqs[i] = None  # not planned: no forward pass
        p = self._plan(seqs, bounds)
        scores = [0.0] * len(p.seqs)
        for members, units in _passes(p):
            for k, v in zip(members, self.backend.score(units)):
                scores[k] = v
        raws = [scores[k] if k >= 0 else None for k in p.slot]
        hits = 0
        if cache is not None:
            cache.put({k: raws[i] for i, k in keys.items() if k not in cached})
            for i, k in keys.items():
                if k in cached:
                    raws[i] = cached[k]
                    hits += 1
        stats = CallStats(item_tokens=[len(p.seqs[k]) if k >= 0 else 0 for k in p.slot],
                          computed_tokens=p.computed_tokens, padded_tokens=p.padded_tokens,
                          passes=len(p.packs) + len(p.batches), shared_prefixes=len(p.shared),
                          reward_cache_hits=hits)
        return raws, truncated, stats

    def score(self, questions: Sequence[str], responses: Sequence[str], *, policy: str | None = None,
              language: str | None = None, score_empty: bool | None = None,
              truncation: str | None = None) -> list[Reward]:
        """One :class:`Reward` per response. Responses without valid code get 0.0 without a forward pass;
        ``score_empty=True`` runs the model on their empty answer anyway (as upstream does) to fill
        ``raw_score``; the reward stays 0.0. Options left at None take the model's defaults.
        :meth:`score_with_stats` also returns what the call ran."""
        return self.score_with_stats(questions, responses, policy=policy, language=language,
                                     score_empty=score_empty, truncation=truncation)[0]

    def score_with_stats(self, questions: Sequence[str], responses: Sequence[str], *, policy: str | None = None,
                         language: str | None = None, score_empty: bool | None = None,
                         truncation: str | None = None) -> tuple[list[Reward], CallStats]:
        """:meth:`score`'s rewards and the :class:`CallStats` of this call (tokens, passes, cache hits):
        returned with the results, so a caller reads the statistics of its own call whatever else runs."""
        o = self._call(dict(policy=policy, language=language, score_empty=score_empty, truncation=truncation))
        questions, responses = checked_pairs("questions", questions, "responses", responses)
        found = extract_batch(responses, policy=o["policy"], language=o["language"], threads=self.options["threads"])
        codes = [e.code for e in found]
        raws, truncated, stats = self._raw_scores(questions, codes, [e.valid or o["score_empty"] for e in found],
                                                  o["truncation"])
        rewards = [Reward(shape(raw, e.valid) if e.valid else 0.0, raw, e.code, e.status, t)
                   for e, raw, t in zip(found, raws, truncated)]
        return rewards, stats

    def plan_for(self, questions: Sequence[str], responses: Sequence[str], *, policy: str | None = None,
                 language: str | None = None, score_empty: bool | None = None,
                 truncation: str | None = None) -> Plan:
        """The forward passes :meth:`score` would plan for these pairs (no reward cache consulted, nothing
        run): for tests and benchmarks that look at what sharing, deduplication and budgets do."""
        o = self._call(dict(policy=policy, language=language, score_empty=score_empty, truncation=truncation))
        questions, responses = checked_pairs("questions", questions, "responses", responses)
        found = extract_batch(responses, policy=o["policy"], language=o["language"], threads=self.options["threads"])
        seqs, bounds, _ = self._sequences(questions, [e.code for e in found],
                                          [e.valid or o["score_empty"] for e in found], o["truncation"])
        return self._plan(seqs, bounds)

    def score_code(self, questions: Sequence[str], codes: Sequence[str], *,
                   truncation: str | None = None) -> list[float]:
        """Raw scores of (question, code) pairs exactly as given, as in the model card's usage."""
        o = self._call(dict(truncation=truncation))
        questions, codes = checked_pairs("questions", questions, "codes", codes)
        return self._raw_scores(questions, codes, [True] * len(codes), o["truncation"])[0]

    def score_groups(self, questions: Sequence[str], responses_per_question: Sequence[Sequence[str]],
                     **options: str | bool | None) -> list[list[Reward]]:
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
                   chunk_chars: int = 4_000_000, **options: str | bool | None) -> Iterator[Reward]:
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

    def best_of_n(self, question: str, candidates: Sequence[str], **options: str | bool | None) -> BestOfN:
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
