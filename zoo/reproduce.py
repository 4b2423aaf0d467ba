"""`zoo reproduce STUB@vN`: rebuild a registered entry from its lineage and compare.

The entry (from the clone's `registry/` mirror) records the git commit of the code that
built it and the `dvc.lock` hash of every stage that did. Reproducing:

1. finds the *results commit*: the first commit from the recorded one towards HEAD whose
   committed `dvc.lock` records exactly those stages (same hashes), which also fixes the
   params they ran with;
2. checks out the recorded code commit in a temporary git worktree, with the results
   commit's `params.yaml`;
3. runs exactly the entry's stages there (`dvc repro STAGE...`, from the shipped data up;
   the worktree has its own empty DVC cache, so nothing is restored instead of run);
4. compares the rebuilt export with the entry: the weights' sha256 first (identical bytes
   are expected on the machine that built it), then every metric within `TOLERANCES`
   (what survives a change of CPU or thread count).

`--pull-inputs` rebuilds only the entry's own stages (`compress@KEY`, `evaluate@KEY`,
`benchmark@KEY`, `export@KEY`): the stages upstream of them (data, dense parent, a
registered parent) are restored from the clone's DVC cache, or pulled from its default
remote, as the results commit's `dvc.lock` records them; what is compared is the same.

`--check-only` runs nothing: it compares the entry's stage hashes with the clone's
committed `dvc.lock`. Nothing is written outside the temporary worktree, which is removed
whatever happens.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from zoo.errors import ReproduceError
from zoo.index.lineage import stage_hash
from zoo.index.schema import Entry, is_weights_file, parse_ref, parse_version
from zoo.storage.names import is_sha256

# How far a rebuilt metric may stray from the registered one and still count as
# reproduced. A retrain of the dense Fashion-MNIST CNN on another machine gave 92.25%
# test accuracy against the registered 92.14% (float sums in another order, another
# thread count), and compressed entries inherit that drift: a metric in [0, 1]
# (accuracy, agreement, retained fraction) may move by 0.01 absolute, any other
# (loss, perplexity) by 5% relative.
ABSOLUTE_TOLERANCE = 0.01
RELATIVE_TOLERANCE = 0.05
# How many commits that changed dvc.lock, from the entry's on, to search for its results.
HISTORY_DEPTH = 200
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
# A stage name (`export@cnn_gmp90`): its key becomes a folder name, so no leading dot.
_STAGE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*(@[A-Za-z0-9_-][A-Za-z0-9_.-]*)?$")


@dataclass(frozen=True)
class Row:
    """One line of the comparison: what was recorded, what came out, whether they agree."""

    what: str
    recorded: str
    rebuilt: str
    ok: bool
    note: str = ""


@dataclass
class Report:
    ref: str
    mode: str  # "check-only" or "rebuild"
    rows: list[Row] = field(default_factory=list)
    verdict: str = ""
    wall_s: float | None = None

    @property
    def ok(self) -> bool:
        return all(row.ok for row in self.rows)


def _git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=300
    )
    if check and done.returncode != 0:
        raise ReproduceError(f"git {' '.join(args)} failed in {repo}: {done.stderr.strip()}")
    return done


def project_root(start: str | os.PathLike[str]) -> Path:
    """The root of the git clone of this project holding `start`; refuse anywhere else."""
    try:
        done = subprocess.run(
            ["git", "-C", str(start), "rev-parse", "--show-toplevel"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except OSError as exc:
        raise ReproduceError(f"git is needed to reproduce an entry: {exc}") from exc
    root = Path(done.stdout.strip()) if done.returncode == 0 else None
    if root is None or not (root / "dvc.yaml").is_file():
        raise ReproduceError(
            f"{Path(start).resolve()} is not inside a git clone of the zoo project (no "
            "dvc.yaml at its top): reproduce runs the project's own pipeline, so run it "
            "from a clone (`git clone <project URL>`)."
        )
    return root


def load_entry(registry: Path, ref: str) -> Entry:
    """The entry `STUB@vN` from a registry/ mirror (a pinned version: aliases move)."""
    stub, version_ref = parse_ref(ref)
    version = parse_version(version_ref) if version_ref else None
    if version is None:
        raise ReproduceError(
            f"{ref}: name a version (STUB@vN); an alias moves, a reproduction is of one "
            "immutable version. `zoo versions STUB` lists them."
        )
    from zoo.index.mirror import entry_path

    path = entry_path(registry, stub, version)
    if not path.is_file():
        raise ReproduceError(f"{stub.at(version)} is not in {registry} (looked for {path}).")
    return Entry.from_json(path.read_bytes())


def entry_stages(entry: Entry) -> dict[str, str]:
    """The entry's lineage stages -> hashes, validated before any reaches git or DVC."""
    lineage = entry.lineage
    if not lineage.git_commit or not lineage.dvc_stages:
        missing = "git commit" if not lineage.git_commit else "DVC stages"
        raise ReproduceError(
            f"{entry.ref} has no lineage to reproduce from (no {missing}): it was published "
            "outside the pipeline (`zoo publish`), not by the `register` stage."
        )
    if not _COMMIT.match(lineage.git_commit):
        raise ReproduceError(f"{entry.ref}: lineage git commit {lineage.git_commit!r} is malformed")
    for name, digest in lineage.dvc_stages.items():
        if not is_sha256(digest):  # a stage hash is a sha256 of its dvc.lock record
            raise ReproduceError(
                f"{entry.ref}: lineage stage {name!r} has a malformed hash {digest!r}"
            )
        if not _STAGE.match(name):
            raise ReproduceError(f"{entry.ref}: lineage stage name {name!r} is malformed")
    if not any(name.startswith("export@") for name in lineage.dvc_stages):
        raise ReproduceError(f"{entry.ref}: lineage names no export@ stage")
    return dict(lineage.dvc_stages)


def entry_key(entry: Entry, stages: dict[str, str], params_text: str) -> str:
    """The pipeline's key of the entry (`export@KEY` of its lineage): a lineage may hold
    several exports (a transfer entry's registered parent, that parent's baseline), so
    the key is the one whose `zoo:` entry in the run's params.yaml has the entry's stub."""
    exports = [name.split("@", 1)[1] for name in stages if name.startswith("export@")]
    try:
        params = yaml.safe_load(params_text)
    except yaml.YAMLError:
        params = None
    zoo = params.get("zoo") if isinstance(params, dict) else None
    if isinstance(zoo, dict):
        named = [
            key
            for key in exports
            if isinstance(zoo.get(key), dict) and zoo[key].get("stub") == str(entry.stub)
        ]
        if len(named) == 1:
            return named[0]
    if len(exports) == 1:
        return exports[0]
    raise ReproduceError(
        f"{entry.ref}: its lineage holds several exports ({', '.join(sorted(exports))}) and "
        "the run's params.yaml names none of them with this stub, so which one is this "
        "entry is unknown"
    )


# The per-entry stages in pipeline order (export reads the evaluation and the benchmark).
_OWN_ORDER = ("compress", "evaluate", "benchmark", "export")


def own_stages(stages: dict[str, str], key: str) -> list[str]:
    """The entry's own stages (`<stage>@KEY`), in pipeline order."""
    own = [name for name in stages if name.endswith(f"@{key}")]

    def order(name: str) -> int:
        kind = name.split("@", 1)[0]
        return _OWN_ORDER.index(kind) if kind in _OWN_ORDER else len(_OWN_ORDER) - 1

    return sorted(own, key=lambda name: (order(name), name))


def _lock_at(repo: Path, commit: str) -> dict[str, dict[str, Any]]:
    done = _git(repo, "show", f"{commit}:dvc.lock", check=False)
    if done.returncode != 0:
        return {}
    try:
        # The C loader when built: a demo dvc.lock is ~100 KB and history holds many.
        doc = yaml.load(done.stdout, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}
    except yaml.YAMLError:
        return {}
    stages = doc.get("stages", {}) if isinstance(doc, dict) else {}
    return {str(k): v for k, v in stages.items() if isinstance(v, dict)}


def lock_rows(stages: dict[str, str], lock: dict[str, dict[str, Any]]) -> list[Row]:
    rows = []
    for name, recorded in sorted(stages.items()):
        record = lock.get(name)
        now = stage_hash(record) if record is not None else "(absent)"
        rows.append(Row(f"stage {name}", recorded[:12], now[:12], now == recorded))
    return rows


def _has_commit(repo: Path, commit: str) -> bool:
    return _git(repo, "cat-file", "-e", f"{commit}^{{commit}}", check=False).returncode == 0


def results_commit(repo: Path, commit: str, stages: dict[str, str]) -> str | None:
    """The first commit from `commit` (the code that built the entry) on towards HEAD
    whose committed dvc.lock records every stage of the entry: the results as committed
    right after the run, with the params they ran with."""
    if not _has_commit(repo, commit):
        return None
    later = _git(
        repo, "rev-list", "--reverse", "--ancestry-path", f"{commit}..HEAD", "--", "dvc.lock"
    ).stdout.split()
    for candidate in [commit, *later][:HISTORY_DEPTH]:
        if all(row.ok for row in lock_rows(stages, _lock_at(repo, candidate))):
            return candidate
    return None


def check_only(ref: str, repo: str | os.PathLike[str] = ".") -> Report:
    """Compare the entry's stage hashes with the clone's committed dvc.lock (HEAD)."""
    root = project_root(repo)
    entry = load_entry(root / "registry", ref)
    stages = entry_stages(entry)
    report = Report(entry.ref, "check-only", lock_rows(stages, _lock_at(root, "HEAD")))
    if report.ok:
        report.verdict = "the committed dvc.lock records exactly the stages that built it"
    else:
        found = results_commit(root, str(entry.lineage.git_commit), stages)
        report.verdict = "the committed dvc.lock no longer records the stages that built it" + (
            f"; commit {found[:12]} does" if found else ""
        )
    return report


@contextmanager
def temporary_worktree(repo: Path, commit: str) -> Iterator[Path]:
    """A detached worktree of `commit`, removed (with git's record of it) on exit."""
    parent = Path(tempfile.mkdtemp(prefix="zoo-reproduce-"))
    tree = parent / "tree"
    _git(repo, "worktree", "add", "--detach", "--quiet", str(tree), commit)
    try:
        yield tree
    finally:
        _git(repo, "worktree", "remove", "--force", str(tree), check=False)
        _git(repo, "worktree", "prune", check=False)
        shutil.rmtree(parent, ignore_errors=True)


def _check_imports_from(tree: Path, python: str, env: dict[str, str]) -> None:
    done = subprocess.run(
        [python, "-c", "import zoo; print(zoo.__file__)"],
        cwd=tree / "pipelines",  # where a stage script runs its imports from
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    found = Path(done.stdout.strip()).resolve() if done.returncode == 0 else None
    if found is None or not found.is_relative_to(tree.resolve()):
        raise ReproduceError(
            f"the stages would import zoo from {found or done.stderr.strip()}, not from the "
            f"worktree of the recorded commit ({tree}): a rebuild would run other code"
        )


def _run(cmd: list[str], cwd: Path, env: dict[str, str], what: str, timeout: float) -> None:
    """Run `cmd` in its own process group: stopped (timeout, Ctrl-C, kill), DVC and the
    stage it runs go together, so nothing keeps writing into a worktree being removed."""
    import signal

    with subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except BaseException:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
    if proc.returncode != 0:
        tail = (out[-1500:] + err[-1500:]).strip()
        raise ReproduceError(f"{what} failed (exit {proc.returncode}):\n{tail}")


def _dvc_output(root: Path, python: str, *args: str) -> str:
    done = subprocess.run(
        [python, "-m", "dvc", *args], cwd=root, capture_output=True, text=True, timeout=300
    )
    return done.stdout.strip() if done.returncode == 0 else ""


def _restore_inputs(
    root: Path, tree: Path, results: str, upstream: list[str], python: str, env: dict[str, str]
) -> None:
    """Put the upstream stages' outputs in `tree` as the results commit recorded them:
    from the clone's DVC cache, or its default remote when the clone has one."""
    (tree / "dvc.lock").write_text(_git(root, "show", f"{results}:dvc.lock").stdout)
    cache = _dvc_output(root, python, "cache", "dir") or str(root / ".dvc" / "cache")
    _run(
        [python, "-m", "dvc", "cache", "dir", "--local", cache],
        tree,
        env,
        "pointing the worktree at the clone's DVC cache",
        300,
    )
    remote = _dvc_output(root, python, "remote", "default")
    verb = "pull" if remote else "checkout"
    source = (
        f"the clone's DVC cache and its remote {remote!r}"
        if remote
        else ("the clone's DVC cache (no default remote to pull from)")
    )
    try:
        _run(
            [python, "-m", "dvc", verb, *upstream],
            tree,
            env,
            f"restoring the entry's inputs ({len(upstream)} upstream stages) from {source}",
            3600,
        )
    except ReproduceError as exc:
        raise ReproduceError(
            f"{exc}\nFetch them first (`dvc pull` with the team's remote configured), or "
            "reproduce without --pull-inputs to rebuild them from the shipped data."
        ) from None
    # A parent published by an upstream `register` stage lives in a local store outside
    # DVC (its receipt names it by a relative path): the clone's own, read as it is.
    store = yaml.safe_load((tree / "params.yaml").read_text()).get("storage", {}).get("url")
    local = isinstance(store, str) and "://" not in store and not Path(store).is_absolute()
    if local and (root / store).is_dir() and not (tree / store).exists():
        (tree / store).parent.mkdir(parents=True, exist_ok=True)
        (tree / store).symlink_to((root / store).resolve(), target_is_directory=True)


def rebuild(
    ref: str,
    repo: str | os.PathLike[str] = ".",
    *,
    python: str = "python",
    timeout: float = 7200,
    pull_inputs: bool = False,
) -> Report:
    """Rebuild the entry in a temporary worktree of its commit and compare it; with
    `pull_inputs`, only its own stages, on inputs restored from DVC."""
    import sys
    import time

    root = project_root(repo)
    entry = load_entry(root / "registry", ref)
    stages = entry_stages(entry)
    commit = str(entry.lineage.git_commit)
    if not _has_commit(root, commit):
        raise ReproduceError(
            f"{entry.ref} was built from commit {commit[:12]}, which this clone does not "
            "have: fetch it (`git fetch --all`, or clone the repository it was pushed to)."
        )
    results = results_commit(root, commit, stages)
    if results is None:
        raise ReproduceError(
            f"no commit from {commit[:12]} to HEAD has a dvc.lock that records the stages "
            f"that built {entry.ref}, so the params they ran with are unknown. `zoo reproduce "
            f"{entry.ref} --check-only` shows which stages differ."
        )
    started = time.perf_counter()
    with temporary_worktree(root, commit) as tree:
        params = _git(root, "show", f"{results}:params.yaml").stdout
        key = entry_key(entry, stages, params)
        (tree / "params.yaml").write_text(params)
        (tree / "dvc.lock").unlink(missing_ok=True)  # rebuilt from nothing, recorded anew
        env = dict(os.environ, DVC_NO_ANALYTICS="1", ZOO_CACHE_DIR=str(tree / ".zoo/cache"))
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        # The stages must import the recorded commit's `zoo`, not the installed clone's.
        env["PYTHONPATH"] = os.pathsep.join([str(tree), env.get("PYTHONPATH", "")]).rstrip(
            os.pathsep
        )
        _check_imports_from(tree, python, env)
        if pull_inputs:
            own = own_stages(stages, key)
            upstream = sorted(set(stages) - set(own))
            _restore_inputs(root, tree, results, upstream, python, env)
            for stage in own:  # forced, one by one in order; --no-commit: cache untouched
                _run(
                    [
                        python,
                        "-m",
                        "dvc",
                        "repro",
                        "--force",
                        "--single-item",
                        "--no-commit",
                        stage,
                    ],
                    tree,
                    env,
                    f"dvc repro {stage} in a worktree of {commit[:12]}",
                    timeout,
                )
        else:
            _run(
                [python, "-m", "dvc", "repro", *sorted(stages)],
                tree,
                env,
                f"dvc repro in a worktree of {commit[:12]}",
                timeout,
            )
        rows = compare(entry, tree / "models" / "export" / key)
    report = Report(entry.ref, "rebuild", rows, wall_s=time.perf_counter() - started)
    identical = weights_identical(report)
    if report.ok:
        report.verdict = (
            "reproduced: byte-identical weights, every metric within tolerance"
            if identical
            else "reproduced within tolerance: the weights differ in their bytes (another "
            "machine or thread count), every metric is within its tolerance"
        )
    else:
        report.verdict = "NOT reproduced: a metric is outside its tolerance" + (
            " although the weights are byte-identical (the registered metrics do not "
            "describe this model)"
            if identical
            else ""
        )
    return report


# Unbounded metrics: relative tolerance even when a value happens to lie in [0, 1] (a
# cross-entropy loss of 0.38 is not a fraction).
_UNBOUNDED = ("loss", "perplexity")


def within(recorded: float, rebuilt: float, name: str = "") -> tuple[bool, str]:
    """Whether `rebuilt` reproduces metric `name` as `recorded` (see ABSOLUTE_ /
    RELATIVE_TOLERANCE)."""
    unbounded = any(word in name for word in _UNBOUNDED)
    if not unbounded and 0.0 <= recorded <= 1.0 and 0.0 <= rebuilt <= 1.0:
        return abs(rebuilt - recorded) <= ABSOLUTE_TOLERANCE, f"±{ABSOLUTE_TOLERANCE:g}"
    bound = RELATIVE_TOLERANCE * max(abs(recorded), 1e-12)
    return abs(rebuilt - recorded) <= bound, f"±{RELATIVE_TOLERANCE:.0%}"


def compare(entry: Entry, export_dir: Path) -> list[Row]:
    """Rows comparing the rebuilt export folder with the registered entry.

    Weights are compared by sha256 (a mismatch alone is not a failure: bytes differ
    across machines); the metrics, within ABSOLUTE_/RELATIVE_TOLERANCE, decide.
    """
    from zoo.index.export import read_export

    if not export_dir.is_dir():
        raise ReproduceError(f"the rebuild wrote no export folder at {export_dir}")
    rebuilt = read_export(export_dir, entry.stub)
    mine = {f.path: f.sha256 for f in rebuilt.files}
    rows = []
    for record in entry.files:
        if is_weights_file(record.path):
            digest = mine.get(record.path, "(absent)")
            same = digest == record.sha256
            # Differing bytes are reported, not failed: the metrics below decide.
            rows.append(
                Row(
                    f"weights {record.path}",
                    record.sha256[:12],
                    digest[:12],
                    True,
                    "identical" if same else "differ",
                )
            )
    for dataset, metrics in sorted(entry.metrics.items()):
        now_metrics = rebuilt.meta.metrics.get(dataset, {})
        for name, value in sorted(metrics.items()):
            now = now_metrics.get(name)
            if not isinstance(value, int | float) or isinstance(value, bool):
                rows.append(Row(f"{dataset} {name}", str(value), str(now), now == value))
                continue
            if not isinstance(now, int | float) or isinstance(now, bool):
                rows.append(Row(f"{dataset} {name}", f"{value:.4f}", str(now), False, "absent"))
                continue
            ok, tol = within(float(value), float(now), name)
            rows.append(Row(f"{dataset} {name}", f"{value:.4f}", f"{now:.4f}", ok, tol))
    return rows


def weights_identical(report: Report) -> bool:
    return all(r.note == "identical" for r in report.rows if r.what.startswith("weights "))


def report_json(report: Report) -> str:
    return json.dumps(
        {
            "ref": report.ref,
            "mode": report.mode,
            "ok": report.ok,
            "verdict": report.verdict,
            "wall_s": report.wall_s,
            "rows": [row.__dict__ for row in report.rows],
        },
        indent=2,
    )


def _print_table(report: Report) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{report.ref} ({report.mode})")
    for column in ("", "recorded", "now", "", "tolerance / note"):
        table.add_column(column)
    for row in report.rows:
        table.add_row(row.what, row.recorded, row.rebuilt, "ok" if row.ok else "MISMATCH", row.note)
    # Logs and pipes get the whole table, not one cut to rich's 80-column default.
    console = Console(width=200) if not os.isatty(1) else Console()
    console.print(table)
    wall = f" ({report.wall_s:.0f} s)" if report.wall_s is not None else ""
    console.print(f"{report.verdict}{wall}")


def run_reproduce(args: Any) -> int:
    import signal
    import sys

    # A `kill` (SIGTERM) unwinds like Ctrl-C: the worktree is removed, the run stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.check_only and args.pull_inputs:
        raise ReproduceError("--check-only runs nothing; --pull-inputs is for a rebuild")
    report = (
        check_only(args.ref, args.repo)
        if args.check_only
        else rebuild(args.ref, args.repo, pull_inputs=args.pull_inputs)
    )
    if args.json:
        print(report_json(report))
    else:
        _print_table(report)
    return 0 if report.ok else 1


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "reproduce",
        help="rebuild an entry from its lineage and compare (hash, then metrics)",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    p.add_argument("ref", help="STUB@vN (a pinned version)")
    p.add_argument(
        "--check-only",
        action="store_true",
        help="compare the entry's stage hashes with the committed dvc.lock; run nothing",
    )
    p.add_argument(
        "--pull-inputs",
        action="store_true",
        help="rebuild only the entry's own stages, on inputs from the DVC cache or remote",
    )
    p.add_argument("--repo", default=".", help="a folder inside the project's git clone")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run_reproduce)
