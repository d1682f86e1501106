"""What every command shares: consoles, the source options, run directories and error output.

Nothing here imports torch at module level, so ``lossatlas --help`` answers at once; the library
is imported inside each command. Library errors never name flags; :func:`fail` translates the
few that suggest a keyword (``replace=True``) into the flag that does the same (``--replace``).
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Any, Iterator, List, Optional

import typer
from rich.markup import escape
from typing_extensions import Annotated

from .._errors import InputError, require
from .consoles import console, errors

MODEL_HELP = ("Built-in model (mlp, smallcnn, smallvgg, vgg9, resnet20, resnet56, resnet56-noshort, "
              "wrn-16-2, ...) or package.module:factory (needed unless a run directory is given)")
DATA_HELP = ("Built-in data set (digits, mnist1d, mnist5k, fashion-mnist, mnist, cifar10, cifar100), a .pt "
             "file of X, y (and X_test, y_test) tensors, or package.module:factory (needed unless a run directory is given)")

# The source options, the same on every command that needs a model (None: not given).
ModelOpt = Annotated[Optional[str], typer.Option("--model", help=MODEL_HELP)]
ModelArgOpt = Annotated[Optional[List[str]], typer.Option("--model-arg", help="key=value for the model factory, repeatable (default: none)")]
CheckpointOpt = Annotated[Optional[Path], typer.Option("--checkpoint", help="trained weights: a state dict file for torch.load(weights_only=True), or .safetensors (default: the run's final weights, else the model as initialized)")]
DataOpt = Annotated[Optional[str], typer.Option("--data", help=DATA_HELP)]
DataRootOpt = Annotated[Optional[Path], typer.Option("--data-root", help="directory of the data set's files (default: where lossatlas downloads it; needed for mnist and cifar)")]
DataSeedOpt = Annotated[Optional[int], typer.Option("--data-seed", help="seed of the train/test split and subsets (default 0)")]
SubsetOpt = Annotated[Optional[int], typer.Option("--subset", help="seeded subset of N training samples (default: the whole training set)")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto (CUDA when available), cpu, cuda, cuda:N or mps")]
ReplaceOpt = Annotated[bool, typer.Option("--replace", help="redo a product stored in the run with other settings")]

# What library messages suggest, and the flag that does it on the command line.
_TRANSLATIONS = {"replace=True": "--replace", "device='cpu' or device='auto'": "--device cpu or --device auto",
                 "the data must be": "--data must be"}
# Library keywords whose option has another name on the command line.
_ALIASES = {"root": "data-root", "n_points": "points", "bn_mode": "bn"}
# Options whose "not given" is not the library's None: what None is spelled as instead.
_NONE = {"--subspace": "--subspace 0"}
_KEYWORD = re.compile(r"\b([a-z][a-z0-9_]*)=(?:'([^']*)'|\"([^\"]*)\"|([A-Za-z0-9_.+-]+))?")


def _options() -> set:
    """The long options of the running command (empty outside one)."""
    from .guard import current_context

    ctx = current_context()
    if ctx is None:
        return set()
    return {o for p in ctx.command.params for o in (*p.opts, *getattr(p, "secondary_opts", ())) if o.startswith("--")}


def translate(text: str, options: set) -> str:
    """A library message in the command line's words: ``name=value`` becomes ``--name value``
    where the running command has that option (``True``: the flag; ``False``: its ``--no-``
    form; ``None``: leave the option out), so no message asks a CLI user for a Python keyword.

    Examples
    --------
    >>> translate("bn='recompute' needs strategy='loop'", {"--bn", "--strategy"})
    '--bn recompute needs --strategy loop'
    """
    for api, flag in _TRANSLATIONS.items():
        text = text.replace(api, flag)
    other = ("give --name to keep both, or write to another --out" if "--name" in options
             else "write to another --out" if "--out" in options else "write to another run directory")
    text = text.replace("write to another store or name", other)

    def one(m: "re.Match") -> str:
        flag = "--" + _ALIASES.get(m[1], m[1]).replace("_", "-")
        if flag not in options:
            return m[0]
        value = next((g for g in m.groups()[1:] if g is not None), "")
        if value == "True":
            return flag
        if value == "False":
            return f"--no-{flag[2:]}" if f"--no-{flag[2:]}" in options else f"no {flag}"
        if value == "None":
            return _NONE.get(flag, f"leave out {flag}")
        return f"{flag} {value}".rstrip() if value not in ("N", "...") else f"{flag} N"

    text = _KEYWORD.sub(one, text)
    return re.sub(r"\b(pass|use|give) leave out", "leave out", text)


def fail(exc: InputError) -> None:
    """One red line on stderr with what to fix, exit code 2."""
    text = translate(str(exc), _options())
    errors.print(f"[bold red]error:[/] {escape(text)}", soft_wrap=True)
    raise typer.Exit(2)


@contextlib.contextmanager
def reported() -> Iterator[None]:
    """Run a command's body; bad input ends it with :func:`fail` after undoing what the command
    wrote to its output directory, Ctrl-C says what was kept and how to go on (exit code 130),
    and library warnings are said in words (see :mod:`lossatlas.cli.guard`)."""
    from .guard import guarded

    with guarded(fail):
        yield


def parse_kv(items: Optional[List[str]]) -> dict:
    """``key=value`` pairs, values read as YAML scalars (``hidden=32`` is an int)."""
    import yaml

    out = {}
    for item in items or []:
        require("=" in item, f"--model-arg takes key=value, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = yaml.safe_load(v)
    return out


def floats(text: str, what: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"{what} takes comma-separated numbers, got {text!r}") from None


def pair(text: Optional[str], what: str) -> Optional[tuple[float, float]]:
    if text is None:
        return None
    v = floats(text, what)
    require(len(v) == 2 and v[0] < v[1], f"{what} takes min,max with min < max, got {text!r}")
    return v[0], v[1]


def source_flags(model=None, model_arg=None, checkpoint=None, data=None, data_root=None, data_seed=None,
                 subset=None, **extra) -> dict:
    """The source options that were given (None ones left out)."""
    given = dict(model=model, model_args=parse_kv(model_arg) if model_arg else None,
                 checkpoint=str(checkpoint) if checkpoint else None, data=data,
                 data_root=str(data_root) if data_root else None, data_seed=data_seed, subset=subset, **extra)
    return {k: v for k, v in given.items() if v is not None}


NEEDS_SOURCE = ("this command needs a model and its data: give a run directory (RUN) made by an earlier "
                "command, or --model (a built-in name or package.module:factory) with --data, and "
                "--checkpoint for trained weights")
# Recorded with a run but not part of what makes two sources the same.
_NOT_COMPARED = ("device", "checkpoint", "checkpoint_sha256", "data_fingerprint", "code_dir")


def absolute_source(source: dict) -> dict:
    """``source`` with every path made absolute and resolved (checkpoint, data file, data root), the
    checkpoint's content hash, and for ``package.module:factory`` specs the working directory they
    import from: a run made with relative paths works from any other directory."""
    import os

    from ..sources import file_sha256

    out = dict(source)
    for key in ("checkpoint", "data_root"):
        if out.get(key):
            out[key] = str(Path(out[key]).expanduser().resolve())
    data = out.get("data")
    if data and (Path(data).expanduser().exists() or Path(data).suffix in (".pt", ".pth")):
        out["data"] = str(Path(data).expanduser().resolve())
    factories = [out.get(k) for k in ("model", "data") if out.get(k) and ":" in out[k] and not Path(out[k]).exists()]
    if factories and not out.get("code_dir"):
        out["code_dir"] = os.getcwd()
    if out.get("checkpoint") and Path(out["checkpoint"]).is_file() and not out.get("checkpoint_sha256"):
        out["checkpoint_sha256"] = file_sha256(out["checkpoint"])
    return out


def resolve_source(run_path: Optional[Path], flags: dict, device: str, defaults: Optional[dict] = None):
    """The command's :class:`~lossatlas.sources.Source` and its run directory (or None).

    With a run directory that recorded a source, that source is used as recorded (its model
    with the run's final weights, its split) and source options are refused: a command on a run
    evaluates on exactly the run's data. Otherwise the options (with ``defaults``) make it.
    """
    from ..sources import Source
    from ..store import RunDir
    from ..store.version import check_run_version

    if run_path is not None:
        run = RunDir(run_path, create=False)
        check_run_version(run.path)
        require(run.has_source(), f"{run.path} records no source (config/source.yaml); is it a lossatlas run directory?")
        require(not flags, f"{run.path} already records its model and data; drop "
                f"{', '.join('--' + k.replace('_', '-').replace('model-args', 'model-arg') for k in flags)} or give no RUN")
        recorded = run.read_source()
        src = Source.from_dict(recorded, f"{run.path}/config/source.yaml").replace(device=device)
        final = run.path / "model.pt"
        if final.is_file():
            src = src.replace(checkpoint=str(final.resolve()))
        src.check_checkpoint()  # a checkpoint overwritten since the run was made is refused now
        return src, run
    given = {**(defaults or {}), **flags}
    require("model" in given and "data" in given, NEEDS_SOURCE)
    return Source.from_dict({**absolute_source(given), "device": device}, "the source options"), None


def _comparable(source: dict) -> dict:
    out = {k: v for k, v in source.items() if k not in _NOT_COMPARED}
    for key in ("data", "data_root"):  # a run recorded with a relative path (older lossatlas)
        if out.get(key) and Path(out[key]).exists():
            out[key] = str(Path(out[key]).resolve())
    return out


def open_out(out: Path, src) -> Any:
    """The output run directory, recording ``src`` there.

    Nothing is written before the source is known to build: its data (subset sizes, files,
    recorded fingerprint) and its model with the checkpoint loaded; a refusal after this point
    is undone (:mod:`lossatlas.cli.guard`). A directory recording another source (other model,
    data or split), whose checkpoint file was overwritten since, written by a newer lossatlas,
    or not writable is refused, so no command mixes two sources in one run or damages a run it
    does not understand.
    """
    from ..execute import check_writable
    from ..store import RunDir, differences
    from ..store.version import VERSION_FILE, check_run_version, record_run_version
    from .guard import journal

    if Path(out).is_dir():
        check_run_version(out)
    check_writable(out)
    src.build_model(src.build_data())  # the source builds: checked before anything is written
    record = {k: v for k, v in src.as_dict().items() if k != "device"}
    existing = RunDir(out, create=False) if Path(out).is_dir() else None
    if existing is not None and existing.has_source():
        stored = existing.read_source()
        diffs = differences(_comparable(stored), _comparable(record))
        require(not diffs, f"{existing.path} records another source ({'; '.join(f'{k}: {a} there, {b} now' for k, a, b in diffs)}); "
                "write to another --out, or give the run directory as RUN to use its own source")
        same_file = stored.get("checkpoint") and record.get("checkpoint") == stored.get("checkpoint")
        if same_file and stored.get("checkpoint_sha256") and record.get("checkpoint_sha256"):
            src.replace(checkpoint_sha256=stored["checkpoint_sha256"]).check_checkpoint()
    j = journal(out)
    run = RunDir(out)
    run.journal = j
    j.remember(run.path / VERSION_FILE)
    if not run.has_source():
        run.write_source(record)
    record_run_version(run.path)
    return run


def record_fingerprint(run, data) -> None:
    """Store the data's fingerprint in the run's source once (later rebuilds are checked against it)."""
    src = run.read_source()
    if src.get("data_fingerprint") is None:
        run.write_source({**src, "data_fingerprint": data.fingerprint})


def test_pair(data):
    X, y = data.test
    return (X, y) if X.shape[0] > 0 else None


# -- where independent work runs (every command with independent tasks) ---------------------
DaskOpt = Annotated[Optional[int], typer.Option("--dask", help="run the independent tasks on a local Dask cluster of N worker processes (default: in this process)")]
SchedulerOpt = Annotated[Optional[str], typer.Option("--scheduler", help="run the independent tasks on the Dask cluster at this address, tcp://host:8786 (default: in this process)")]


def check_executor(dask: Optional[int], scheduler: Optional[str]) -> None:
    """The --dask and --scheduler options, checked before any work."""
    require(dask is None or scheduler is None, "--dask starts a local cluster and --scheduler uses a running one: give one of them")
    require(dask is None or dask >= 1, f"--dask takes a positive number of worker processes, got {dask}")
    require(scheduler is None or bool(scheduler.strip()), "--scheduler takes an address such as tcp://host:8786")


@contextlib.contextmanager
def executor(dask: Optional[int], scheduler: Optional[str]) -> Iterator[Any]:
    """The command's executor: None (in this process), or a Dask cluster (started or connected
    now, before any work). A task that kills every worker it runs on ends the command with its
    coordinates; the cells finished before stay stored."""
    check_executor(dask, scheduler)
    if dask is None and scheduler is None:
        yield None
        return
    from ..execute import WorkerLostError, executor_for

    with executor_for(dask=dask, scheduler=scheduler) as ex:
        where = f"{dask} local worker processes" if dask else f"the cluster at {scheduler}"
        console.print(f"running the independent tasks on {where} ({ex.n_workers} workers)")
        try:
            yield ex
        except WorkerLostError as exc:
            errors.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
            raise typer.Exit(3) from None
        stats = ex.stats
        if stats["tasks"]:
            console.print(f"{stats['tasks']} tasks of {stats['payload_bytes_mean']:.0f} bytes each (pickled), "
                          f"{stats['scattered_bytes']} bytes sent to the workers once")


def write_report(run) -> None:
    """Rebuild ``RUN/report.html`` from whatever the run holds, as every command does at its end;
    a report that cannot be built (plotly missing) is said, not fatal: the products are written."""
    from ..report import build_report

    try:
        path = build_report(run.path)
    except InputError as exc:
        console.print(f"[yellow]no report:[/] {escape(str(exc))}")
        return
    console.print(f"report: {path}")


def auto_batch_norm(bn: str, net) -> str:
    """``bn`` as given, or for ``"auto"`` the honest choice for points away from the model's own:
    statistics recomputed at every point when the model has batch norm, else ``"eval"``."""
    if bn != "auto":
        return bn
    from torch.nn.modules.batchnorm import _BatchNorm

    return "recompute" if any(isinstance(m, _BatchNorm) for m in net.modules()) else "eval"


# -- the loss a command measures, and models given as run directories or checkpoints --------
BatchSizeOpt = Annotated[Optional[int], typer.Option(
    "--batch-size", help="samples per evaluation batch (default: 256 for convolutional models, all at once "
                         "otherwise); larger batches run faster on a GPU, and 3-15% faster at 512-1024 on a CPU; "
                         "a stored product is resumed or reused only at its own batch size")]


def check_batch_size(batch_size: Optional[int]) -> None:
    """Refuse a batch size below 1 before any work."""
    require(batch_size is None or batch_size >= 1, f"--batch-size must be a positive number of samples, got {batch_size}")


def with_batch_size(settings: dict, batch_size: Optional[int]) -> dict:
    """``settings`` with the batch size when one is given: products stored before the option
    existed (at the default) keep matching a request without it."""
    return settings if batch_size is None else {**settings, "batch_size": batch_size}


LossOpt = Annotated[Optional[str], typer.Option(
    "--loss", help="the loss measured: cross_entropy, nll, mse, bce or l1 (default: the run's training loss, "
                   "else cross_entropy)")]


def loss_for(run, loss: Optional[str]) -> str:
    """``--loss`` as given, else the loss the run was trained with, else cross-entropy; checked."""
    from ..landscape.losses import LOSSES

    if loss is None and run is not None and run.has_config("train"):
        loss = (run.read_config("train").get("train") or {}).get("loss")
    loss = loss or "cross_entropy"
    require(loss in LOSSES, f"--loss takes one of {sorted(LOSSES)}, got {loss!r}")
    return loss


def endpoint_source(spec: Path, flags: dict, device: str):
    """``(source, label)`` of a model given as a run directory (its own source and final weights)
    or as a checkpoint file with the source options (--model, --data, ...), as `interpolate`,
    `connect` and `sharpness` take their minima."""
    spec = Path(spec)
    if spec.is_dir():
        src, _ = resolve_source(spec, {}, device)
        return src, spec.name
    require(spec.exists(), f"file not found: {spec} (give a run directory or a checkpoint file)")
    require("model" in flags, f"{spec} is a checkpoint: give --model (and --data) to build the model it belongs to")
    src, _ = resolve_source(None, {**flags, "checkpoint": str(spec)}, device)
    return src, spec.stem
