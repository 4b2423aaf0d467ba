"""`zoo export --format compressed-tensors` and `zoo import`: zoo models to and from the
folders transformers and vLLM load (zoo/deploy/compressed_tensors.py does the work)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

#: Formats `zoo export` writes (one today; ONNX may join it).
EXPORT_FORMATS = ("compressed-tensors",)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export", help="write a zoo model as a compressed-tensors folder transformers loads"
    )
    p.add_argument("source", help="zoo stub[@version] or a local export folder")
    p.add_argument("out", help="folder to write (replaced atomically)")
    p.add_argument("--format", choices=EXPORT_FORMATS, required=True, help="what to write")
    p.add_argument("--tokenizer", metavar="DIR", help="copy this folder's tokenizer files along")
    p.add_argument("--registry", metavar="URL", help="store URL for a stub (default $ZOO_REGISTRY)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run_export)

    p = subparsers.add_parser(
        "import", help="turn a compressed-tensors folder into a zoo export (for zoo publish)"
    )
    p.add_argument("source", help="a transformers folder with a compressed-tensors config")
    p.add_argument("out", help="zoo export folder to write (replaced atomically)")
    p.add_argument("--stub", help="stub to record in zoo.json (or give it to zoo publish)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run_import)


def _source_model(source: str, registry: str | None) -> object:
    folder = Path(source)
    if folder.is_dir():
        from zoo.client.load import load_folder

        return load_folder(folder, verify=True)
    if folder.exists() or not source.startswith("zoo:"):
        from zoo.errors import ExportFileMissingError

        raise ExportFileMissingError(source, ".", "give a zoo export folder or a zoo: stub")
    from zoo.client.api import load

    return load(source, registry=registry)


def run_export(args: argparse.Namespace) -> int:
    from zoo.deploy.compressed_tensors import export_compressed_tensors, require_package

    require_package()  # before a possibly long download
    model = _source_model(args.source, args.registry)
    result = export_compressed_tensors(
        model,  # type: ignore[arg-type]
        args.out,
        what=args.source,
        tokenizer=args.tokenizer,
    )
    facts = {
        "folder": str(result.folder),
        "format": result.weight_format,
        "quantized_layers": len(result.quantized_layers),
        "sparsity": result.sparsity,
        "sparsity_structure": result.sparsity_structure,
        "trust_remote_code": result.remote_code,
    }
    if args.json:
        print(json.dumps(facts, indent=2, sort_keys=True))
        return 0
    sparse = (
        f", {result.sparsity:.1%} zeros ({result.sparsity_structure})"
        if result.sparsity_structure
        else ""
    )
    layers = len(result.quantized_layers)
    quantized = f", {layers} quantized layers" if layers else ""
    print(f"wrote {result.folder}: compressed-tensors {result.weight_format}{quantized}{sparse}")
    remote = ", trust_remote_code=True" if result.remote_code else ""
    print(
        "load it with: transformers.AutoModelForSequenceClassification.from_pretrained("
        f"{str(result.folder)!r}{remote})"
    )
    return 0


def run_import(args: argparse.Namespace) -> int:
    from zoo.deploy.compressed_tensors import import_compressed_tensors

    result = import_compressed_tensors(args.source, args.out, stub=args.stub)
    meta = result.meta
    facts = {
        "folder": str(result.folder),
        "stub": meta.stub,
        "sparsity": meta.sparsity.overall,
        "sparsity_structure": meta.sparsity.structure,
        "quantization": meta.quantization.scheme,
        "quantization_method": meta.quantization.method,
        "quantized_layers": len(meta.quantization.layers),
    }
    if args.json:
        print(json.dumps(facts, indent=2, sort_keys=True))
        return 0
    quant = meta.quantization.scheme or "not quantized"
    print(
        f"wrote {result.folder}: {meta.sparsity.overall:.1%} of prunable weights zero "
        f"({meta.sparsity.structure}), {quant}"
        + (f" ({len(meta.quantization.layers)} layers)" if meta.quantization.layers else "")
    )
    print(f"publish it with: zoo publish {result.folder}" + ("" if meta.stub else " --stub STUB"))
    return 0
