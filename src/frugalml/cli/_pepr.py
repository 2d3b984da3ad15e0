"""``frugalml pepr``: score any results CSV by performance per resource (PePR).

    frugalml pepr results.csv --performance accuracy --resource energy_j --group dataset
    frugalml pepr study.csv --performance accuracy --variant E --variant M -o scored.csv

The output is the input table (every row and column, same order) plus ``<resource>_norm``
and ``pepr_<resource>`` per resource, on stdout or in ``-o OUT.csv``. Rows that cannot be
scored are counted in one warning line on stderr; errors in the input name the column and
the data row (counted from 1 after the header). Without ``--group``, a table whose setting
columns (dataset, pretrained, fraction) hold several values is normalised per setting, and
a line on stderr says so (``--no-group``: the whole table as one group). A negative
resource is refused, naming its rows.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from frugalml.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

_DESCRIPTION = """\
Score every row of a results table by PePR = P / (1 + R_n) (Selvan et al., NLDL 2025),
where R_n is the resource min-max normalised over the rows of one group. P must be a
fraction in [0, 1]. The table comes back with <resource>_norm and pepr_<resource> added.
Without --group, the setting columns present with several values (dataset, pretrained,
fraction) make the groups. PePR-E (--variant E) uses training energy, train_energy_j: the
epochs' training windows; setup and evaluation are reported separately (a table without
train_energy_j falls back to energy_j, with a warning).
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``pepr`` command."""
    parser = subparsers.add_parser(
        "pepr",
        help="score a results CSV by performance per resource (PePR)",
        description=_DESCRIPTION,
    )
    parser.add_argument("csv", metavar="CSV", help="results table with a header row ('-': stdin)")
    parser.add_argument(
        "--performance",
        metavar="COL",
        help="performance column, a fraction in [0, 1] (e.g. accuracy; or --column "
        "performance=COL)",
    )
    parser.add_argument(
        "--resource",
        action="append",
        default=[],
        metavar="COL",
        help="resource column to normalise (e.g. energy_j); repeat for several",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME",
        help="a named PePR variant of a study table: E (train_energy_j), C (train_co2_g), "
        "M (the training's GPU peak memory, else host RSS), T (train_duration_s), params, "
        "flops (flops_per_sample); a table without the train_ columns falls back to "
        "energy_j, co2_g, duration_s and the process's peaks; repeat for several",
    )
    parser.add_argument(
        "--group",
        action="append",
        default=[],
        metavar="COL",
        help="column that defines a setting (normalise within each); repeat for several, "
        "e.g. --group dataset --group pretrained --group fraction (default: the setting "
        "columns dataset, pretrained, fraction that hold several values)",
    )
    parser.add_argument(
        "--column",
        action="append",
        default=[],
        metavar="ROLE=COL",
        help="which column plays which role (model, performance, energy_j, energy_kwh, co2_g, "
        "time_s, time_h, params, setting: repeatable); mapped columns are added under "
        "frugalml's names (accuracy, energy_j, ...) and scored, settings become the groups",
    )
    parser.add_argument(
        "--no-group",
        action="store_true",
        help="normalise over the whole table as one group, even across settings",
    )
    parser.add_argument(
        "-o",
        "--output",
        "--out",
        dest="output",
        metavar="OUT.csv",
        type=Path,
        help="write here instead of stdout",
    )
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from frugalml.analysis import pepr, prepare_variants

    if not args.resource and not args.variant and not args.column:
        raise ConfigError(
            "no resource to score",
            fix="give --resource COL (e.g. --resource energy_j) or --variant E",
        )
    if args.no_group and args.group:
        raise ConfigError(
            "--no-group and --group contradict each other",
            fix="give --group COL to normalise per setting, or --no-group for the whole table",
        )
    table = _read_csv(args.csv)
    if args.column:
        table, args = _map_columns(table, args)
    if args.performance is None:
        raise ConfigError(
            "no performance column", fix="give --performance COL or --column performance=COL"
        )
    group = list(args.group) or None
    if group is None and not args.no_group:
        group = _setting_groups(table, args.performance, args.resource) or None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resources: list[str] = []
        if args.variant:
            table, resources = prepare_variants(table, args.variant, group)
        resources += [r for r in args.resource if r not in resources]
        scored = pepr(table, performance=args.performance, resource=resources, group=group)
    for warning in caught:
        logger.warning("%s", " ".join(str(warning.message).split()))

    if args.output is None:
        scored.to_csv(sys.stdout, index=False)
    else:
        scored.to_csv(args.output, index=False)
        logger.info("wrote %d rows to %s", len(scored.index), args.output)
    return 0


def _map_columns(
    table: pd.DataFrame, args: argparse.Namespace
) -> tuple[pd.DataFrame, argparse.Namespace]:
    """Apply ``--column ROLE=COL``: the mapped columns, resources and groups (analysis._mapping)."""
    from frugalml.analysis._mapping import apply_mapping, mapped_resources, parse_column_mapping

    mapping = parse_column_mapping(args.column)
    table, settings = apply_mapping(table, mapping)
    changes = vars(args).copy()
    if mapping.has("performance") and args.performance is None:
        changes["performance"] = "accuracy"
    if not args.resource and not args.variant:
        changes["resource"] = list(mapped_resources(mapping))
        if not changes["resource"]:
            raise ConfigError(
                "no resource to score",
                fix="map one, e.g. --column energy_kwh=COL, or give --resource COL",
            )
    if settings and not args.group and not args.no_group:
        changes["group"] = settings
    return table, argparse.Namespace(**changes)


def _setting_groups(table: pd.DataFrame, performance: str, resources: list[str]) -> list[str]:
    """The setting columns to normalise within, said on stderr: those with several values."""
    from frugalml.analysis import mixed_settings

    mixed = mixed_settings(table, exclude=[performance, *resources])
    if mixed:
        logger.info(
            "normalising per setting, by %s; --group COL to choose the columns, "
            "--no-group to normalise over the whole table",
            ", ".join(f"{c} ({n} values)" for c, n in mixed.items()),
        )
    return list(mixed)


def _read_csv(source: str) -> pd.DataFrame:
    """Read the table, its rows numbered from 1 after the header for error messages."""
    import pandas as pd

    from frugalml.analysis._table import read_csv_table

    # Nullable dtypes keep an integer column with gaps as integers in the output.
    table = read_csv_table(source, row_noun="result", nullable=True)
    # Messages then say "data row 3": the third row after the header, counted from 1.
    table.index = pd.RangeIndex(1, len(table.index) + 1, name="data row")
    return table
