"""`zoo catalog build|serve`: the browsable catalog of a registry."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("catalog", help="build or serve the static model catalog")
    sub = parser.add_subparsers(dest="catalog_command", metavar="ACTION", required=True)
    build = sub.add_parser("build", help="write the catalog's static pages")
    build.add_argument("--out", required=True, metavar="DIR", help="output folder (replaced)")
    build.add_argument("--registry", metavar="URL", help="default $ZOO_REGISTRY, then local store")
    build.add_argument("--metric", default="accuracy", help="quality metric plotted")
    build.add_argument(
        "--publish", action="store_true", help="also upload the pages next to the store (catalog/)"
    )
    build.set_defaults(func=run_build)
    serve = sub.add_parser("serve", help="serve a built catalog on http://127.0.0.1")
    serve.add_argument("--dir", default="catalog", metavar="DIR", help="built catalog folder")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--build", action="store_true", help="(re)build DIR first")
    serve.add_argument("--registry", metavar="URL")
    serve.set_defaults(func=run_serve)


def run_build(args: argparse.Namespace) -> int:
    from zoo.catalog.build import build_catalog
    from zoo.client.settings import registry_url
    from zoo.storage.base import open_store

    store = open_store(registry_url(args.registry), create=False)
    out = build_catalog(args.out, store, metric=args.metric)
    print(f"catalog written to {out}/index.html")
    if args.publish:
        from zoo.catalog.site import SITE_PREFIX, upload_site

        count = upload_site(out, store)
        print(f"uploaded {count} changed file(s) to {store.url}/{SITE_PREFIX}/")
    return 0


def run_serve(args: argparse.Namespace) -> int:
    from pathlib import Path

    from zoo.catalog.site import make_server
    from zoo.errors import ConfigError

    if args.build:
        from zoo.catalog.build import build_catalog

        build_catalog(args.dir, args.registry)
    if not (Path(args.dir) / "index.html").is_file():
        raise ConfigError(
            f"{args.dir}/index.html not found: build the catalog first with "
            f"`zoo catalog build --out {args.dir}` (or pass --build)"
        )
    server = make_server(args.dir, args.port)
    port = server.server_address[1]
    print(f"serving {args.dir} at http://127.0.0.1:{port}/ (Ctrl-C to stop)", file=sys.stderr)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0
