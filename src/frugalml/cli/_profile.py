"""``frugalml profile`` (where the joules go inside a network) and ``frugalml factorial``
(the conv/linear/ReLU factorial experiment of Yarally et al., CAIN 2023)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from frugalml.cli._format import fmt_energy, stderr_console
from frugalml.cli._hints import Flag
from frugalml.errors import ConfigError
from frugalml.train._config import check_device

#: ``--input`` sides (as a spec's ``image_size``), and the most bytes the resized data may take.
MIN_SIDE, MAX_SIDE = 4, 1024
MAX_INPUT_BYTES = 4 * 2**30

if TYPE_CHECKING:
    from rich.console import Console

    from frugalml.data import ImageDataset
    from frugalml.profile import Factor, FactorialResult, NetworkProfile


#: ``profile`` sets the input as --input CxHxW, not as image_size=N
_FIX_FLAGS: dict[str, Flag] = {"image_size": lambda n: f"--input CxHxW (e.g. 3x{n}x{n})"}


def register(subparsers: Any) -> None:
    profile = subparsers.add_parser(
        "profile",
        help="where the joules of a training step go inside a network, layer by layer",
        description=(
            "Train MODEL for a few steps: count parameters and forward FLOPs per layer, "
            "clock each layer's forward and backward time (hooked steps), meter the energy "
            "of unhooked steps, and attribute that energy to layers by time share."
        ),
    )
    profile.add_argument("model", help="a timm model name or a frugalml built-in (frugal_cnn)")
    profile.add_argument(
        "--arg",
        dest="model_args",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a model knob, e.g. --arg conv_layers=4 (repeatable)",
    )
    profile.add_argument("--dataset", default="digits", help="dataset (default digits, 1x8x8)")
    profile.add_argument("--data-root", default=None, help="MedMNIST data root")
    profile.add_argument(
        "--input", default=None, metavar="CxHxW", help="resize the data to this, e.g. 3x32x32"
    )
    profile.add_argument(
        "--batch",
        "--batch-size",
        dest="batch",
        type=int,
        default=32,
        help="batch size (default 32)",
    )
    profile.add_argument("--steps", type=int, default=20, help="metered steps (default 20)")
    profile.add_argument(
        "--profile-steps", type=int, default=None, help="hooked steps (default: --steps)"
    )
    profile.add_argument("--warmup", type=int, default=3, help="unmeasured steps first")
    profile.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    profile.add_argument("--threads", type=int, default=None, help="torch CPU threads (default 1)")
    profile.add_argument("--seed", type=int, default=0)
    profile.add_argument("--top", type=int, default=15, help="layers in the table (default 15)")
    profile.add_argument("--png", type=Path, default=None, help="write the bar chart here")
    profile.add_argument("--json", type=Path, default=None, help="write the full profile here")
    profile.set_defaults(handler=_profile, fix_flags=_FIX_FLAGS)
    _add_factorial(subparsers)


def _add_factorial(subparsers: Any) -> None:
    factorial = subparsers.add_parser(
        "factorial",
        help="the {1,4} conv x {3,7} linear x ReLU on/off experiment on frugal_cnn",
        description=(
            "Train frugal_cnn in the 8 cells of Yarally et al.'s factorial design, REPEATS "
            "seeds each, meter every trial into a study store in DIR, and test each factor's "
            "effect on training energy and accuracy (Kruskal-Wallis, epsilon-squared)."
        ),
    )
    factorial.add_argument("--dataset", default="digits", help="dataset (default digits)")
    factorial.add_argument("--data-root", default=None, help="MedMNIST data root")
    factorial.add_argument("--epochs", type=int, default=5, help="epochs per trial (default 5)")
    factorial.add_argument("--repeats", type=int, default=3, help="seeds per cell (default 3)")
    factorial.add_argument("--first-seed", type=int, default=0)
    factorial.add_argument(
        "--fraction", type=float, default=1.0, help="training-data fraction (default 1.0)"
    )
    factorial.add_argument("--width", type=int, default=16, help="frugal_cnn width (default 16)")
    factorial.add_argument("--hidden", type=int, default=64, help="hidden units (default 64)")
    factorial.add_argument(
        "--batch",
        "--batch-size",
        dest="batch",
        type=int,
        default=32,
        help="batch size (default 32)",
    )
    factorial.add_argument("--lr", type=float, default=5e-4, help="Adam learning rate")
    factorial.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    factorial.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default 1)"
    )
    factorial.add_argument("--no-warmup", action="store_true", help="skip the warm-up epoch")
    factorial.add_argument("--retry-failed", action="store_true", help="run failed trials again")
    factorial.add_argument(
        "-o", "--out", type=Path, default=Path("runs/factorial"), help="output directory"
    )
    factorial.set_defaults(handler=_factorial)


# -- shared ---------------------------------------------------------------------------------


def _fmt_count(value: float) -> str:
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g}{suffix}"
    return f"{value:.0f}"


def _stdout_console() -> Console:
    """Rich's console on stdout; 120 columns when piped (rich would pick 80 and fold the
    layer names of the tables)."""
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=120)


def _set_threads(threads: int | None) -> None:
    """The one threads rule (frugalml.train.apply_threads): 1 unless --threads says."""
    from frugalml.train import apply_threads

    apply_threads(threads, option="--threads")


# -- profile --------------------------------------------------------------------------------


def _parse_input(text: str) -> tuple[int, int, int]:
    parts = text.lower().replace("×", "x").split("x")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 3 or any(v < 1 for v in values):
        raise ConfigError(
            f"--input {text!r} is not CxHxW", fix="write e.g. --input 3x32x32 or 1x28x28"
        )
    c, h, w = values
    if not (MIN_SIDE <= h <= MAX_SIDE and MIN_SIDE <= w <= MAX_SIDE):
        raise ConfigError(
            f"--input {text!r}: height and width must lie in [{MIN_SIDE}, {MAX_SIDE}] pixels "
            "(the limit of a spec's image_size)",
            fix="write e.g. --input 3x32x32 or 3x224x224",
        )
    if c not in (1, 3):
        raise ConfigError(
            f"--input has {c} channels; datasets convert only to 1 or 3", fix="use 1xHxW or 3xHxW"
        )
    return c, h, w


def _parse_model_args(items: list[str]) -> dict[str, Any]:
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--arg {item!r} is not KEY=VALUE", fix="e.g. --arg conv_layers=4")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            out[key.strip()] = value
    return out


def _profile_dataset(args: argparse.Namespace, model_args: dict[str, Any]) -> ImageDataset:
    """The dataset at ``--input``, else at the size a study trains ``args.model`` at (one
    rule, ``frugalml.study._spec.trial_input_size``: the dataset's own size for a model
    named on its own; a preset's sizes, such as cpu-tiny's 32 x 32 for lcnet_050, are
    matched with ``--input``); refused before resizing when the resized copy would take
    more than :data:`MAX_INPUT_BYTES`."""
    from frugalml.data import load_dataset
    from frugalml.study._spec import ModelEntry, trial_input_size

    requested = _parse_input(args.input) if args.input else None
    dataset = load_dataset(args.dataset, root=args.data_root)
    if requested is not None:
        c, h, w = requested
    else:
        entry = ModelEntry(args.model, tuple(sorted(model_args.items())))
        side = trial_input_size(entry, None)  # None: the dataset's size, as in a study
        c, (h, w) = dataset.channels, ((side, side) if side else dataset.image_size)
    n = sum(len(split) for split in dataset.splits().values())
    if n * c * h * w > MAX_INPUT_BYTES:
        raise ConfigError(
            f"{args.dataset} at {c}x{h}x{w} would take {n * c * h * w / 2**30:.1f} GiB "
            f"({n:,} images), more than the {MAX_INPUT_BYTES / 2**30:.0f} GiB limit",
            fix="give a smaller --input (e.g. 3x64x64) or a smaller dataset",
        )
    return dataset.with_channels(c).resized((h, w))


def _preset_size_notes(model: str, channels: int, size: tuple[int, int]) -> list[str]:
    """Where a preset trains ``model`` at another input size than ``size`` (the dataset's,
    which a study also uses for a model named on its own), say so and how to match it."""
    from frugalml.models import get_preset, list_presets

    notes = []
    for preset in list_presets():
        sides = {r.image_size for r in get_preset(preset) if r.name == model and r.image_size}
        for side in sorted(s for s in sides if (s, s) != size):
            notes.append(
                f"{model} runs at {size[0]}x{size[1]} here (the dataset's size, as in a study "
                f"that names it on its own); preset {preset} trains it at {side}x{side}: "
                f"add --input {channels}x{side}x{side} to profile what that study trains"
            )
    return notes


def _profile(args: argparse.Namespace) -> int:
    from rich.console import Console

    from frugalml.models import count_costs, create_model
    from frugalml.profile import ProfileConfig, plot_profile, profile_network

    if args.top < 1:
        raise ConfigError(f"--top must be 1 or more, got {args.top}", fix="e.g. --top 15")
    config = ProfileConfig(
        batch_size=args.batch,
        steps=args.steps,
        profile_steps=args.profile_steps,
        warmup_steps=args.warmup,
        device=args.device,
        seed=args.seed,
        threads=args.threads,
    )
    model_args = _parse_model_args(args.model_args)
    check_device(args.device, where="--device")
    if args.input:
        _parse_input(args.input)  # before anything is loaded
    _set_threads(args.threads)
    err = Console(stderr=True)
    with err.status(f"loading {args.dataset} ..."):
        dataset = _profile_dataset(args, model_args)
    if not args.input:
        for note in _preset_size_notes(args.model, dataset.channels, dataset.image_size):
            err.print(f"note: {note}", highlight=False)
    with err.status(f"building {args.model} ..."):
        import torch

        torch.manual_seed(args.seed)
        model = create_model(
            args.model, num_classes=dataset.num_classes, in_chans=dataset.channels, **model_args
        )
        # The study's check (its set-up counts costs the same way): a model that cannot run
        # on this input (test_vit at 8 x 8, drop_rate=abc) is one line, not a traceback.
        count_costs(model, dataset.input_shape)
    total = config.warmup_steps + config.steps + config.hooked_steps
    with err.status(
        f"training {args.model}: {config.warmup_steps} warm-up + {config.steps} metered + "
        f"{config.hooked_steps} hooked steps ({total} in all) ..."
    ):
        profile = profile_network(model, dataset, config, model_name=args.model)
    out = _stdout_console()
    _print_profile(out, profile, args.top)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(profile.to_dict(), indent=2) + "\n", encoding="utf-8")
        err.print(f"wrote {args.json}")
    if args.png:
        plot_profile(profile, args.png, top_k=min(args.top, 20))
        err.print(f"wrote {args.png}")
    return 0


def _short_type(layer_type: str) -> str:
    return {"outside model": "outside", "normalisation": "norm"}.get(layer_type, layer_type)


def _print_profile(console: Console, profile: NetworkProfile, top: int) -> None:
    from rich.table import Table

    shape = "x".join(str(v) for v in profile.input_shape)
    kind = profile.energy_kind
    console.print(
        f"[bold]{profile.model}[/bold] on {profile.dataset} ({shape}, {profile.num_classes} "
        f"classes), batch {profile.batch_size}, {profile.device}: {profile.params:,} parameters, "
        f"{_fmt_count(profile.forward_flops / profile.batch_size)} forward FLOPs per sample"
    )
    console.print(
        f"energy of {profile.steps} training steps: {fmt_energy(profile.energy_j)} "
        f"[bold]{kind}[/bold] ({profile.energy_source}), "
        f"{fmt_energy(profile.energy_per_step_j)} per step, "
        f"{profile.window_step_s * 1e3:.2f} ms per step"
    )
    by_type = Table(
        title=f"by layer type (energy {kind}, attributed by time share)", title_justify="left"
    )
    by_type.add_column("type", justify="left", no_wrap=True)
    for column in ("layers", "params", "fwd FLOPs", "fwd ms", "bwd ms", "share", "energy"):
        by_type.add_column(column, justify="right")
    for t in profile.by_type():
        by_type.add_row(
            _short_type(t.layer_type),
            str(t.layers),
            _fmt_count(t.params),
            _fmt_count(t.forward_flops),
            f"{t.forward_s * 1e3:.3f}",
            f"{t.backward_s * 1e3:.3f}",
            f"{t.time_share:.1%}",
            fmt_energy(t.energy_j),
        )
    console.print(by_type)

    layers = profile.top_layers(top, include_outside=True)
    table = Table(
        title=f"top {len(layers)} of {len(profile.layers)} parts by energy ({kind}, attributed;"
        " * = a container's own operators)",
        title_justify="left",
    )
    table.add_column("layer", justify="left", overflow="fold")
    table.add_column("type", justify="left", no_wrap=True)
    for column in ("params", "fwd FLOPs", "fwd ms", "bwd ms", "share", "energy"):
        table.add_column(column, justify="right")
    for layer in layers:
        table.add_row(
            layer.name + (" *" if layer.own_ops else ""),
            _short_type(layer.layer_type),
            _fmt_count(layer.params),
            _fmt_count(layer.forward_flops),
            f"{layer.forward_s * 1e3:.3f}",
            f"{layer.backward_s * 1e3:.3f}",
            f"{layer.time_share:.1%}",
            fmt_energy(layer.energy_j),
        )
    console.print(table)
    console.print(
        f"FLOPs per batch of {profile.batch_size} (counted); ms per step "
        "(measured on the hooked steps); module classes are in the --json output",
        highlight=False,
    )
    for note in profile.notes:
        console.print(f"note: {note}", highlight=False)


# -- factorial ------------------------------------------------------------------------------


def _factorial(args: argparse.Namespace) -> int:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from frugalml.profile import FactorialConfig, FactorialProgress, run_factorial

    config = FactorialConfig(
        dataset=args.dataset,
        epochs=args.epochs,
        repeats=args.repeats,
        fraction=args.fraction,
        width=args.width,
        hidden=args.hidden,
        batch_size=args.batch,
        lr=args.lr,
        device=args.device,
        first_seed=args.first_seed,
        data_root=args.data_root,
        warmup=not args.no_warmup,
        threads=args.threads,
    )
    check_device(args.device, where="--device")
    _set_threads(args.threads)
    err = stderr_console()  # no wrapping or bars without a terminal: one line per event
    progress = Progress(
        TextColumn("[bold]factorial"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("epochs | {task.fields[trials]} | {task.fields[energy]} so far"),
        TimeElapsedColumn(),
        TextColumn("left"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[current]}"),
        console=err,
        disable=not err.is_terminal,
    )
    task = progress.add_task(
        "factorial",
        total=config.trials_total * config.epochs,
        trials=f"0/{config.trials_total} trials",
        energy="0 J",
        current="",
    )

    def on_progress(p: FactorialProgress) -> None:
        progress.update(
            task,
            completed=p.epochs_done,
            trials=f"{p.trials_done}/{p.trials_total} trials",
            energy=f"{fmt_energy(p.energy_j)} {p.energy_kind if p.energy_j else ''}".strip(),
            current=p.current,
        )
        if p.event == "trial_finished":
            progress.console.print(f"  done   {p.current}: {p.message}", highlight=False)
        elif p.event == "trial_failed":
            progress.console.print(f"  [red]failed[/red] {p.current}: {p.message}")
        elif p.event == "started":
            progress.console.print(f"factorial in {args.out}: {p.message}", highlight=False)

    with progress:
        result = run_factorial(
            config, args.out, on_progress=on_progress, retry_failed=args.retry_failed
        )
    _print_factorial(_stdout_console(), result)
    for name, path in result.files.items():
        err.print(f"{name}: {path}", highlight=False)
    return 1 if result.failed else 0


def _change_label(factor: Factor) -> str:
    if isinstance(factor.level_from, bool):
        return f"{factor.label} {'on' if factor.level_from else 'off'} -> " + (
            "on" if factor.level_to else "off"
        )
    return f"{factor.level_from} -> {factor.level_to} {factor.label}"


def _print_factorial(console: Console, result: FactorialResult) -> None:
    from rich.table import Table

    kind = result.energy_kind
    table = Table(
        title=f"factor effects on training energy ({kind}) and test accuracy, "
        f"{len(result.rows)} trials; Kruskal-Wallis H and p, epsilon-squared",
        title_justify="left",
    )
    table.add_column("change", justify="left", no_wrap=True)
    for column in (
        "n", "energy J", "energy %", "accuracy", "acc pp", "H", "p", "eps^2", "p acc",
    ):  # fmt: skip
        table.add_column(column, justify="right", no_wrap=True)
    for e in result.effects:
        table.add_row(
            _change_label(e.factor),
            f"{e.n_from}+{e.n_to}",
            f"{e.median_energy_from_j:.3g} -> {e.median_energy_to_j:.3g}",
            f"{e.energy_change_pct:+.1f}%",
            f"{e.median_accuracy_from:.3f} -> {e.median_accuracy_to:.3f}",
            f"{e.accuracy_change_pp:+.1f}",
            f"{e.energy_test.h:.2f}",
            f"{e.energy_test.p:.2g}",
            f"{e.energy_test.epsilon_squared:.2f}",
            f"{e.accuracy_test.p:.2g}",
        )
    console.print(table)
    console.print("energy and accuracy: medians at each level (the other factors pooled)")
    console.print(result.conv_sentence, highlight=False)
    console.print(result.dominance_sentence, highlight=False)
    for note in result.notes:
        console.print(f"note: {note}", highlight=False)
    if result.failed:
        console.print(
            f"[red]{len(result.failed)} trial(s) failed[/red]; see 'frugalml study status "
            f"{result.out_dir}'"
        )
