"""Shared plumbing of the ``tempscale`` command, by concern:

* :mod:`._console` -- :class:`CLIError`, warnings, tables, progress bars;
* :mod:`._numbers` -- numbers as the command reads them;
* :mod:`._readers` -- inputs: numbers on the command line, ``.npy``/``.npz``/``.csv`` files, labels;
* :mod:`._writers` -- outputs, written without following an existing path.

This module re-exports their names, so ``from tempscale.cli._common import CLIError,
write_output`` keeps working; the subcommands import from the modules themselves.

Every subcommand module in this package defines ``register(subparsers)``, which adds its
parser and sets ``func=run`` on it; ``run(args)`` returns an exit code.  Errors are raised as
:class:`CLIError` (or ``ValueError``/``TypeError``/``IndexError``/``OSError``) and printed by
``main`` as one line on stderr with exit status 2, never a traceback.
"""

from __future__ import annotations

from ._console import CLIError, console, err_console, fmt, print_table, progress, warn
from ._numbers import is_number, parse_float, parse_floats
from ._readers import (
    LABEL_NAMES,
    Table,
    add_input_args,
    add_input_kind,
    as_logits,
    check_labels,
    load_array,
    load_input,
    load_labels,
    looks_like_probabilities,
    read_table,
    split_key,
    warn_if_probabilities,
)
from ._writers import add_output_args, check_output, write_array, write_output, write_text

__all__ = [
    "CLIError",
    "LABEL_NAMES",
    "Table",
    "add_input_args",
    "add_input_kind",
    "add_output_args",
    "as_logits",
    "check_labels",
    "check_output",
    "console",
    "err_console",
    "fmt",
    "is_number",
    "load_array",
    "load_input",
    "load_labels",
    "looks_like_probabilities",
    "parse_float",
    "parse_floats",
    "print_table",
    "progress",
    "read_table",
    "split_key",
    "warn",
    "warn_if_probabilities",
    "write_array",
    "write_output",
    "write_text",
]
