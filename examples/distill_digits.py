"""Distil a teacher MLP into a much smaller student on scikit-learn's handwritten digits.

A complete knowledge-distillation experiment that runs on a laptop CPU in a minute or two (no
download: the 8x8 digits ship with scikit-learn): a teacher (64-256-256-10 MLP) is trained on the
labels, then a much smaller student (64-16-10) from the same initial weights, once on the labels
only and once per temperature with ``tempscale.torch.KDLoss``; the table reports held-out test
accuracy and NLL, mean +- std over seeds.

The experiment itself ships inside the package (it is what ``tempscale distill`` runs); this file
runs that command.  Run::

    python examples/distill_digits.py                # 5 seeds, about a minute on 2 cores
    python examples/distill_digits.py --quick        # 2 seeds, fewer epochs: seconds
    python examples/distill_digits.py --markdown     # also print the table as Markdown
    tempscale distill --quick                        # the same, from the command line

Needs torch and scikit-learn (rich draws the table when installed).
"""

from __future__ import annotations

import sys

from tempscale.cli import main

if __name__ == "__main__":
    sys.exit(main(["distill", *sys.argv[1:]]))
