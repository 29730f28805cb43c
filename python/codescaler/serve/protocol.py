"""The server's request and response bodies: one pydantic model per JSON shape an endpoint reads or
answers (ours, Cohere/Jina/vLLM rerank, OpenRLHF's ``/get_reward``, vLLM's classify and pooling), and the
error body every refusal carries. Field descriptions and validators here are the OpenAPI schema."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictInt,
                      create_model,
                      field_validator, model_validator)

from .. import options as opts
from ..model import lone_surrogate

if TYPE_CHECKING:
    from pydantic.fields import FieldInfo

JSON_DEPTH = 200  # arrays and objects nested deeper are refused (pydantic-core's JSON parser stops there)


def _valid_unicode(text: str) -> str:
    """Every text field of a body: text that is not valid Unicode is never scored nor echoed; a 422 names
    the field, as ``RewardModel.score``'s InputError does."""
    at = lone_surrogate(text)
    if at is not None:
        raise ValueError(f"not valid Unicode: lone surrogate {text[at]!r} at character {at}")
    return text


Text = Annotated[str, AfterValidator(_valid_unicode)]


def _json_integer(value: object) -> object:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def integer(minimum: int) -> Any:  # a type form (Annotated[...]) for pydantic, not a value
    """A JSON integer of at least ``minimum``: JSON Schema's integers include ``1.0``; a bool or a string
    stays refused."""
    return Annotated[StrictInt, Field(ge=minimum), BeforeValidator(_json_integer)]


def _exactly_one(*names: str) -> dict:
    """The schema of "exactly one of these fields is given and not null"."""
    return {"oneOf": [{"required": [n], "properties": {n: {"not": {"type": "null"}}}} for n in names]}


def _per_call_field(o: opts.Option) -> tuple[Any, FieldInfo]:
    if o.choices is not None:
        kind = Literal[o.choices]
    elif o.kind is bool:
        kind = StrictBool
    elif o.kind is int:
        kind = integer(1)
    else:
        kind = o.kind
    return kind | None, Field(None, description=f"{o.help} (default: the server's)")


# Generated from the option table: the per-call names and their choices are declared once.
PerCall = create_model("PerCall", __config__=ConfigDict(extra="forbid"),
                       **{n: _per_call_field(opts.BY_NAME[n]) for n in opts.PER_CALL})


class Item(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: Text
    response: Text


class Group(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: Text
    responses: list[Text]


class RewardsRequest(PerCall):
    """Exactly one of ``items`` (independent pairs) and ``groups`` (one question, several responses)."""

    model_config = ConfigDict(json_schema_extra=_exactly_one("items", "groups"))
    items: list[Item] | None = None
    groups: list[Group] | None = None

    @model_validator(mode="after")
    def _one_of(self) -> RewardsRequest:
        if (self.items is None) == (self.groups is None):
            raise ValueError("send exactly one of 'items' and 'groups'")
        return self


class BestOfNRequest(PerCall):
    question: Text
    candidates: list[Text] = Field(min_length=1)


class RerankDocument(BaseModel):
    text: Text


class RerankRequest(PerCall):
    """The Cohere/Jina/vLLM rerank body; unknown fields (e.g. Cohere's ``rank_fields``) are ignored."""

    model_config = ConfigDict(extra="ignore")
    query: Text
    documents: list[Text | RerankDocument]
    top_n: integer(0) | None = Field(None, description="results to return; null or 0: all")
    return_documents: StrictBool = Field(True, description="echo each document's text (Jina's and vLLM's "
                                         "behaviour; Cohere's v1 default is false)")
    model: Text | None = Field(None, description="ignored (one model is served); echoed in the response")


class GetRewardRequest(PerCall):
    """OpenRLHF's remote reward model body; ``labels`` and unknown fields are accepted and ignored."""

    model_config = ConfigDict(extra="ignore")
    query: list[Text]
    prompts: list[Text] | None = None
    labels: list[Any] | None = None


class ChatContentPart(BaseModel):
    model_config = ConfigDict(extra="ignore", json_schema_extra={
        "properties": {"type": {"const": "text"}, "text": {"type": "string"}}, "required": ["type", "text"]})
    type: str
    text: Text | None = None

    @model_validator(mode="after")
    def _text_only(self) -> ChatContentPart:
        if self.type != "text" or self.text is None:
            raise ValueError(f"only text parts are scored, got a {self.type!r} part")
        return self


class ChatMessage(BaseModel):
    """An OpenAI chat message: ``role`` and the text of ``content`` are read, other fields ignored."""

    model_config = ConfigDict(extra="ignore")
    role: Text
    content: Text | list[ChatContentPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""


class VllmPoolingRequest(PerCall):
    """vLLM's pooling request forms: ``input`` (one rendered conversation or a list of them) or
    ``messages`` (one conversation). vLLM-only knobs (``user``, ``priority``, ``request_id``,
    ``add_special_tokens``, ``use_activation``/``activation``/``softmax``, ``task``, ``chat_template``, ...)
    are accepted and ignored: the number returned is always the reward."""

    model_config = ConfigDict(extra="ignore", json_schema_extra=_exactly_one("input", "messages"))
    model: Text | None = Field(None, description="ignored (one model is served); echoed in the response")
    input: Text | list[Text] | None = Field(None, description="chat texts rendered by a chat template (ChatML or "
                                            "Llama-3): the last user turn is the question, the text after the "
                                            "last assistant header the response")
    messages: list[ChatMessage] | None = Field(None, description="one conversation: the last assistant message is "
                                               "the response, the last user message before it the question")
    truncate_prompt_tokens: integer(-1) | None = Field(
        None, description="null, -1 or at least the server's max_length: the reward is defined over the model's "
        "whole length (see the 'truncation' option for what is cut beyond it)")

    @field_validator("input", mode="before")
    @classmethod
    def _no_token_ids(cls, value: object) -> object:
        if isinstance(value, list) and any(isinstance(v, (int, list)) for v in value):
            raise ValueError("token ids are not accepted: send the rendered text (a string or a list of strings)")
        return value

    @model_validator(mode="after")
    def _one_of(self) -> VllmPoolingRequest:
        if (self.input is None) == (self.messages is None):
            raise ValueError("send exactly one of 'input' and 'messages'")
        return self


class ClassificationRequest(VllmPoolingRequest):
    """vLLM's ``ClassificationRequest`` (its completion and chat forms)."""


class PoolingRequest(VllmPoolingRequest):
    """vLLM's ``PoolingRequest`` (its completion and chat forms)."""

    encoding_format: Literal["float", "base64"] = Field("float", description="'base64': the rewards as float32 "
                                                        "bytes (rounded from the float64 of 'float')")
    embed_dtype: Literal["float32"] = "float32"
    endianness: Literal["native", "little", "big"] = "native"


class Result(BaseModel):
    reward: float
    raw_score: float | None
    status: str
    truncated: bool


class ModelInfo(BaseModel):
    name: str
    backend: str
    dtype: str
    max_length: int


class RewardsResponse(BaseModel):
    results: list[Result] | list[list[Result]]
    model: ModelInfo


class BestOfNResponse(BaseModel):
    index: int
    rewards: list[float]
    results: list[Result]
    model: ModelInfo


class RerankResult(BaseModel):
    index: int
    relevance_score: float
    document: RerankDocument | None = None


class RerankUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class RerankResponse(BaseModel):
    id: str
    model: str
    results: list[RerankResult]
    usage: RerankUsage


class GetRewardResponse(BaseModel):
    rewards: list[float]
    scores: list[float]
    extra_logs: dict[str, list[float]]
    model: ModelInfo


class UsageInfo(BaseModel):
    prompt_tokens: int
    total_tokens: int
    completion_tokens: int = 0
    prompt_tokens_details: None = None


class RewardFields(BaseModel):
    """Beyond vLLM's fields (its models keep unknown ones): what ``/v1/rewards`` says of the item."""

    raw_score: float | None
    status: str
    truncated: bool


class ClassificationData(RewardFields):
    index: int
    label: str = Field(description="always 'reward'")
    probs: list[float] = Field(description="[the reward]: 0.0 without valid code, else softplus of the raw score")
    num_classes: int = Field(description="always 1")


class ClassificationResponse(BaseModel):
    id: str
    object: Literal["list"]
    created: int
    model: str
    data: list[ClassificationData]
    usage: UsageInfo


class PoolingData(RewardFields):
    index: int
    object: Literal["pooling"]
    data: list[float] | str = Field(description="[the reward], or its float32 bytes in base64")


class PoolingResponse(BaseModel):
    id: str
    object: Literal["list"]
    created: int
    model: str
    data: list[PoolingData]
    usage: UsageInfo


class HealthResponse(BaseModel):
    status: str = Field(description='"ok"; "busy" when the model call under way has run longer than the request '
                        'timeout (503); "loading", "failed: ..." or "shutting down" (503)')
    model: ModelInfo | None = None
    busy_seconds: float | None = Field(None, description="how long the model call under way has run (0 when idle)")


class ErrorDetail(BaseModel):
    type: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorDetail
