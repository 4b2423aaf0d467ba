"""The index's data: faceted stubs, entries and their facts, as dataclasses with JSON round-trip.

A stub names a model the way SparseZoo users know it,
`zoo:<domain>/<task>/<architecture>/<dataset>/<sparse_tag>`, and a reference adds a version
or an alias: `zoo:cv/classification/cnn_small/fashion_mnist/pruned90_quant@v2`.
Versions (`v1`, `v2`, ...) are immutable; aliases (`latest`, `stable`, custom) move.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, ClassVar

from zoo.errors import InvalidStubError, SchemaError
from zoo.storage.names import (
    MAX_VERSION,
    check_count,
    check_file_name,
    check_sha256,
    check_version_number,
    is_sha256,
)

PREFIX = "zoo:"
FACETS: tuple[str, ...] = ("domain", "task", "architecture", "dataset", "sparse_tag")
ENTRY_FORMAT = "zoo-entry/1"

# Lower-case so stubs are stable as S3 keys, file names and URLs on every filesystem.
_FACET_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_VERSION_RE = re.compile(r"^v([1-9][0-9]{0,8})$")
_ALIAS_RE = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")

Scalar = float | int | str | bool | None


def _check_facet(name: str, value: str, text: str) -> str:
    if not isinstance(value, str) or not _FACET_RE.match(value) or value.endswith("."):
        raise InvalidStubError(
            text,
            f"facet {name} = {value!r} must be 1-64 characters of a-z, 0-9, '_', '-', '.', "
            "starting with a letter or digit",
        )
    return value


@dataclass(frozen=True, order=True)
class Stub:
    """A model's faceted name, without version."""

    domain: str
    task: str
    architecture: str
    dataset: str
    sparse_tag: str

    def __post_init__(self) -> None:
        for name in FACETS:
            _check_facet(name, getattr(self, name), self.text_unchecked())

    def text_unchecked(self) -> str:
        return PREFIX + "/".join(str(getattr(self, n)) for n in FACETS)

    def __str__(self) -> str:
        return self.text_unchecked()

    @property
    def path(self) -> str:
        """The stub as a relative POSIX path (store keys, registry/ folders)."""
        return "/".join(getattr(self, n) for n in FACETS)

    def facets(self) -> dict[str, str]:
        return {n: getattr(self, n) for n in FACETS}

    def at(self, version: int | str) -> str:
        """`zoo:...@v2` for a version number, or `zoo:...@alias`."""
        ref = format_version(version) if isinstance(version, int) else version
        return f"{self}@{ref}"

    @classmethod
    def parse(cls, text: str) -> Stub:
        """Parse `zoo:a/b/c/d/e` (the `zoo:` prefix is optional). A version is an error here."""
        stub, ref = parse_ref(text)
        if ref is not None:
            raise InvalidStubError(text, "expected a stub without '@version'")
        return stub


def parse_ref(text: str) -> tuple[Stub, str | None]:
    """Split `zoo:a/b/c/d/e[@ref]` into the stub and the raw ref (`v2`, `latest`) or None."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidStubError(str(text), "empty stub")
    body = text.strip()
    body = body[len(PREFIX) :] if body.startswith(PREFIX) else body
    ref: str | None = None
    if "@" in body:
        body, ref = body.split("@", 1)
        check_ref(ref, text)
    parts = body.split("/")
    if len(parts) != len(FACETS):
        raise InvalidStubError(
            text,
            f"expected {len(FACETS)} facets {'/'.join('<' + f + '>' for f in FACETS)}, "
            f"got {len(parts)}",
        )
    return Stub(*parts), ref


def check_ref(ref: str, text: str | None = None) -> str:
    """Validate a version (`v3`) or alias (`stable`) name; return it."""
    if _VERSION_RE.match(ref) or (_ALIAS_RE.match(ref) and not re.match(r"^v[0-9]", ref)):
        return ref
    raise InvalidStubError(
        text or ref,
        f"{ref!r} is neither a version (v1, v2, ...) nor an alias name "
        "(a-z, 0-9, '_', '-', '.', starting with a letter, not v<digit>)",
    )


def parse_version(ref: str) -> int | None:
    """`v3` -> 3; an alias name -> None."""
    match = _VERSION_RE.match(ref)
    return int(match.group(1)) if match else None


def format_version(version: int) -> str:
    return f"v{int(version)}"


def check_alias(name: str) -> str:
    if parse_version(name) is not None or not _ALIAS_RE.match(name) or name[:2] == "v0":
        raise InvalidStubError(name, "alias names must not look like versions (v1, v2, ...)")
    check_ref(name)
    return name


def is_weights_file(path: str) -> bool:
    return path.endswith(".safetensors") and "/" not in path


def _as_dict(data: Any, what: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise SchemaError(what, f"expected an object, got {type(data).__name__}")
    return data


@functools.cache
def _fields_of(cls: Any) -> tuple[frozenset[str], tuple[str, ...]]:
    """(all field names, required field names) of a dataclass; cached: 100k summaries."""
    every = fields(cls)
    required = tuple(f.name for f in every if f.default is MISSING and f.default_factory is MISSING)
    return frozenset(f.name for f in every), required


def _pick(cls: Any, data: dict[str, Any], what: str) -> dict[str, Any]:
    """Keep the keys `cls` knows (newer writers may add some) and check required ones."""
    known, required = _fields_of(cls)
    out = {k: v for k, v in data.items() if k in known}
    missing = [name for name in required if name not in out]
    if missing:
        raise SchemaError(what, f"missing field(s) {', '.join(missing)}")
    return out


def _check_type(value: Any, kinds: tuple[type, ...], where: str, what: str) -> Any:
    """`value` if it is one of `kinds` (a bool is not a number here), else SchemaError."""
    numeric = float in kinds or int in kinds
    if isinstance(value, kinds) and not (numeric and isinstance(value, bool) and bool not in kinds):
        return value
    names = " or ".join("null" if k is type(None) else k.__name__ for k in kinds)
    raise SchemaError(where, f"{what} must be {names}, got {type(value).__name__}")


_SCALAR = (float, int, str, bool, type(None))
_OPT_STR = (str, type(None))
_OPT_INT = (int, type(None))
_OPT_BOOL = (bool, type(None))


def _check_table(value: Any, where: str, what: str) -> dict[str, dict[str, Scalar]]:
    """metrics / benchmarks: {name: {name: scalar}}."""
    _check_type(value, (dict,), where, what)
    for key, inner in value.items():
        _check_type(key, (str,), where, f"{what} key")
        _check_type(inner, (dict,), where, f"{what}[{key!r}]")
        for name, scalar in inner.items():
            _check_type(name, (str,), where, f"{what}[{key!r}] key")
            _check_type(scalar, _SCALAR, where, f"{what}[{key!r}][{name!r}]")
    return value


_SCALAR_TYPES = frozenset(_SCALAR)


def _is_table(value: Any) -> bool:
    return type(value) is dict and all(
        type(key) is str
        and type(inner) is dict
        and all(type(n) is str and type(x) in _SCALAR_TYPES for n, x in inner.items())
        for key, inner in value.items()
    )


def _check_str_map(value: Any, kinds: tuple[type, ...], where: str, what: str) -> None:
    _check_type(value, (dict,), where, what)
    for key, item in value.items():
        _check_type(key, (str,), where, f"{what} key")
        _check_type(item, kinds, where, f"{what}[{key!r}]")


@dataclass(frozen=True)
class FileRecord:
    """One file of an entry. For safetensors files, `parameters` counts every element of
    every tensor stored and `zeros` the elements equal to zero, so `zoo index verify` can
    recompute both from the bytes."""

    path: str  # relative POSIX path inside the export folder
    size: int
    sha256: str
    parameters: int | None = None
    zeros: int | None = None

    def __post_init__(self) -> None:
        where = f"file record {self.path!r}"
        check_file_name(self.path, "file record")
        check_count(self.size, where, "size")
        check_sha256(self.sha256, where)
        for what in ("parameters", "zeros"):
            if getattr(self, what) is not None:
                check_count(getattr(self, what), where, what)

    @property
    def sparsity(self) -> float | None:
        if self.parameters is None or self.zeros is None or self.parameters == 0:
            return None
        return self.zeros / self.parameters

    @classmethod
    def from_dict(cls, data: Any) -> FileRecord:
        d = _pick(cls, _as_dict(data, "file record"), "file record")
        return cls(**d)


@dataclass(frozen=True)
class SparsityFacts:
    """How sparse the model is: `overall`, `parameters` and `nonzero` count the weights of
    prunable (conv / linear) layers, as the recipe targeted ("sparsity (prunable
    layers)"); `model_parameters` and `model_nonzero` count every weight of the loaded
    model, embeddings, norms and biases included ("sparsity (all weights)"), 0 when an
    older export did not record them."""

    overall: float = 0.0  # fraction of zero weights over `parameters`
    parameters: int = 0  # prunable parameters counted
    nonzero: int = 0
    model_parameters: int = 0
    model_nonzero: int = 0
    structure: str = "unstructured"  # "unstructured", "2:4", "channel", ...
    per_layer: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_type(self.overall, (float, int), "sparsity", "overall")
        check_count(self.parameters, "sparsity", "parameters")
        check_count(self.nonzero, "sparsity", "nonzero")
        check_count(self.model_parameters, "sparsity", "model_parameters")
        check_count(self.model_nonzero, "sparsity", "model_nonzero")
        _check_type(self.structure, (str,), "sparsity", "structure")
        _check_str_map(self.per_layer, (float, int), "sparsity", "per_layer")

    @classmethod
    def from_dict(cls, data: Any) -> SparsityFacts:
        return cls(**_pick(cls, _as_dict(data, "sparsity"), "sparsity"))


@dataclass(frozen=True)
class QuantizationFacts:
    """How the weights/activations are quantized; `scheme` None means not quantized."""

    scheme: str | None = None  # e.g. "int8"
    weight_bits: int | None = None
    activation_bits: int | None = None
    granularity: str | None = None  # "per_tensor", "per_channel"
    symmetric: bool | None = None
    method: str | None = None  # "ptq", "qat"
    layers: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for what in ("scheme", "granularity", "method"):
            _check_type(getattr(self, what), _OPT_STR, "quantization", what)
        for what in ("weight_bits", "activation_bits"):
            _check_type(getattr(self, what), _OPT_INT, "quantization", what)
        _check_type(self.symmetric, _OPT_BOOL, "quantization", "symmetric")
        _check_type(self.layers, (list,), "quantization", "layers")
        for layer in self.layers:
            _check_type(layer, (str,), "quantization", "layers[]")

    @classmethod
    def from_dict(cls, data: Any) -> QuantizationFacts:
        return cls(**_pick(cls, _as_dict(data, "quantization"), "quantization"))


@dataclass(frozen=True)
class Lineage:
    """What produced an entry, so it can be reproduced and checked."""

    parent: str | None = None  # "zoo:...@v1" of the model this one was made from
    data_hash: str | None = None
    recipe_hash: str | None = None
    git_commit: str | None = None
    git_dirty: bool | None = None
    dvc_stages: dict[str, str] = field(default_factory=dict)  # stage name -> dvc.lock hash
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for what in ("parent", "data_hash", "recipe_hash", "git_commit"):
            _check_type(getattr(self, what), _OPT_STR, "lineage", what)
        _check_type(self.git_dirty, _OPT_BOOL, "lineage", "git_dirty")
        _check_str_map(self.dvc_stages, (str,), "lineage", "dvc_stages")
        _check_type(self.extra, (dict,), "lineage", "extra")

    @classmethod
    def from_dict(cls, data: Any) -> Lineage:
        return cls(**_pick(cls, _as_dict(data, "lineage"), "lineage"))


@dataclass(frozen=True)
class Entry:
    """One immutable version of a stub, as published."""

    FORMAT: ClassVar[str] = ENTRY_FORMAT

    stub: Stub
    version: int
    files: list[FileRecord]
    content_hash: str  # sha256 over files + facts: equal content => same version
    metrics: dict[str, dict[str, Scalar]] = field(default_factory=dict)  # dataset -> name -> v
    benchmarks: dict[str, dict[str, Scalar]] = field(default_factory=dict)  # machine -> ...
    recipe: str | None = None  # path of the recipe among `files`
    card: str | None = None  # path of the model card (README.md) among `files`
    sparsity: SparsityFacts = field(default_factory=SparsityFacts)
    quantization: QuantizationFacts = field(default_factory=QuantizationFacts)
    lineage: Lineage = field(default_factory=Lineage)
    created_at: str = ""  # ISO 8601 UTC, set when published

    def __post_init__(self) -> None:
        where = f"entry of {self.stub}"
        check_version_number(self.version, where)
        _check_type(self.files, (list,), where, "files")
        paths = [_check_type(f, (FileRecord,), where, "files[]").path for f in self.files]
        if len(set(paths)) != len(paths):
            raise SchemaError(where, "lists a file path twice")
        for what in ("recipe", "card"):
            name = getattr(self, what)
            if name is not None and name not in paths:
                raise SchemaError(where, f"{what} {name!r} is not one of its files")
        _check_type(self.content_hash, (str,), where, "content_hash")
        _check_table(self.metrics, where, "metrics")
        _check_table(self.benchmarks, where, "benchmarks")
        _check_type(self.created_at, (str,), where, "created_at")

    @property
    def ref(self) -> str:
        return self.stub.at(self.version)

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def parameters(self) -> int:
        """Parameters of the loaded model. Entries from before this was recorded fall
        back to the elements stored in the weights files (packed streams included)."""
        if self.sparsity.model_parameters:
            return self.sparsity.model_parameters
        return sum(f.parameters or 0 for f in self.files if is_weights_file(f.path))

    @property
    def nonzero(self) -> int | None:
        """Non-zero weights of the loaded model (None when the entry does not record it)."""
        return self.sparsity.model_nonzero if self.sparsity.model_parameters else None

    def file(self, path: str) -> FileRecord:
        for record in self.files:
            if record.path == path:
                return record
        raise SchemaError(self.ref, f"has no file {path!r}")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["stub"] = str(self.stub)
        data["format"] = ENTRY_FORMAT
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: Any) -> Entry:
        d = dict(_as_dict(data, "entry"))
        fmt = d.pop("format", ENTRY_FORMAT)
        if fmt != ENTRY_FORMAT:
            raise SchemaError(
                "entry", f"unsupported format {fmt!r} (this zoo reads {ENTRY_FORMAT})"
            )
        d = _pick(cls, d, "entry")
        files = _check_type(d["files"], (list,), "entry", "files")
        return cls(
            stub=Stub.parse(_check_type(d["stub"], (str,), "entry", "stub")),
            version=d["version"],
            files=[FileRecord.from_dict(f) for f in files],
            content_hash=d["content_hash"],
            metrics=_check_table(d.get("metrics", {}), "entry", "metrics"),
            benchmarks=_check_table(d.get("benchmarks", {}), "entry", "benchmarks"),
            recipe=_check_type(d.get("recipe"), _OPT_STR, "entry", "recipe"),
            card=_check_type(d.get("card"), _OPT_STR, "entry", "card"),
            sparsity=SparsityFacts.from_dict(d.get("sparsity", {})),
            quantization=QuantizationFacts.from_dict(d.get("quantization", {})),
            lineage=Lineage.from_dict(d.get("lineage", {})),
            created_at=d.get("created_at", ""),
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> Entry:
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as exc:
            raise SchemaError("entry", f"not valid JSON: {exc}") from exc


def content_hash(
    files: list[FileRecord],
    metrics: dict[str, Any],
    benchmarks: dict[str, Any],
    sparsity: SparsityFacts,
    quantization: QuantizationFacts,
    lineage: Lineage,
) -> str:
    """The identity of an entry's content: same files and facts => same hash => no new version.

    Timestamps and the version itself are left out on purpose, so republishing the same
    export (a second `dvc repro`) is recognised as a no-op.
    """
    payload = {
        "files": sorted([f.path, f.size, f.sha256] for f in files),
        "metrics": metrics,
        "benchmarks": benchmarks,
        "sparsity": asdict(sparsity),
        "quantization": asdict(quantization),
        # The commit that registered a model is not part of what it is: re-registering
        # the same export after an unrelated commit must not create a new version.
        "lineage": {
            k: v for k, v in asdict(lineage).items() if k not in ("git_commit", "git_dirty")
        },
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


@dataclass(frozen=True)
class EntrySummary:
    """What the published index keeps per version: enough to search, sort and resolve,
    small enough that 100k of them stay cheap. The full entry is fetched by `entry_key`."""

    stub: Stub
    version: int
    entry_sha256: str  # sha256 of the entry JSON object stored at entry_key
    content_hash: str
    size: int
    parameters: int
    sparsity: float
    quantization: str | None
    metrics: dict[str, dict[str, Scalar]]
    created_at: str
    #: The exact base `stub@vN` of an adapter entry (None for a model): search and the
    #: catalog list adapters under it. Left out of the document when None.
    adapter_of: str | None = None

    def __post_init__(self) -> None:
        # A query parses every summary of the index (100k at scale): one cheap test for
        # the common, valid case; the detailed checks only find which field is wrong.
        if (
            self.adapter_of is None
            and type(self.version) is int
            and 0 < self.version <= MAX_VERSION
            and type(self.entry_sha256) is str
            and type(self.content_hash) is str
            and type(self.size) is int
            and self.size >= 0
            and type(self.parameters) is int
            and self.parameters >= 0
            and type(self.sparsity) in (float, int)
            and (self.quantization is None or type(self.quantization) is str)
            and type(self.created_at) is str
            and _is_table(self.metrics)
        ):
            return
        where = f"index summary of {self.stub}"
        check_version_number(self.version, where)
        _check_type(self.entry_sha256, (str,), where, "entry_sha256")
        _check_type(self.content_hash, (str,), where, "content_hash")
        check_count(self.size, where, "size")
        check_count(self.parameters, where, "parameters")
        _check_type(self.sparsity, (float, int), where, "sparsity")
        _check_type(self.quantization, _OPT_STR, where, "quantization")
        _check_table(self.metrics, where, "metrics")
        _check_type(self.created_at, (str,), where, "created_at")
        if self.adapter_of is not None:
            _check_type(self.adapter_of, (str,), where, "adapter_of")
            try:
                _, ref = parse_ref(self.adapter_of)
            except InvalidStubError:
                ref = None
            if ref is None or parse_version(ref) is None:
                raise SchemaError(
                    where, f"adapter_of {self.adapter_of!r} must be an exact zoo:...@vN"
                )

    @property
    def ref(self) -> str:
        return self.stub.at(self.version)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["stub"] = str(self.stub)
        if d["adapter_of"] is None:  # models: their index documents stay as they were
            del d["adapter_of"]
        return d

    @classmethod
    def from_dict(cls, data: Any, stub: Stub | None = None) -> EntrySummary:
        """`stub` given: the data may omit it (index shards store it once per stub)."""
        data = _as_dict(data, "summary")
        if stub is not None:
            data = {**data, "stub": stub}
        d = _pick(cls, data, "summary")
        if not isinstance(d["stub"], Stub):
            d["stub"] = Stub.parse(d["stub"])
        # Read from an index: it names an entry object, so it must be a hash. (Summaries
        # built in memory, e.g. by the catalog, may carry none.)
        if not is_sha256(d["entry_sha256"]):
            check_sha256(d["entry_sha256"], f"index summary of {d['stub']}")
        return cls(**d)

    @classmethod
    def of(cls, entry: Entry, entry_sha256: str) -> EntrySummary:
        return cls(
            stub=entry.stub,
            version=entry.version,
            entry_sha256=entry_sha256,
            content_hash=entry.content_hash,
            size=entry.size,
            parameters=entry.parameters,
            sparsity=entry.sparsity.overall,
            quantization=entry.quantization.scheme,
            metrics=entry.metrics,
            created_at=entry.created_at,
            adapter_of=entry.lineage.parent if _is_adapter(entry) else None,
        )


def _is_adapter(entry: Entry) -> bool:
    from zoo.index.adapters import is_adapter  # it reads this module's types

    return is_adapter({f.path for f in entry.files})


@dataclass(frozen=True)
class AliasEvent:
    """One move of an alias; the list of them is the alias's history."""

    alias: str
    version: int | None  # None: the alias was removed
    previous: int | None
    at: str  # ISO 8601 UTC
    generation: int

    def __post_init__(self) -> None:
        if not isinstance(self.alias, str) or not _ALIAS_RE.match(self.alias):
            raise SchemaError("alias event", f"alias {self.alias!r} is not an alias name")
        for what in ("version", "previous"):
            if getattr(self, what) is not None:
                check_version_number(getattr(self, what), "alias event")
        _check_type(self.at, (str,), "alias event", "at")
        check_count(self.generation, "alias event", "generation")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> AliasEvent:
        return cls(**_pick(cls, _as_dict(data, "alias event"), "alias event"))
