"""A minimal linear model builder that hands HiGHS one row-wise matrix in a single call.

Building through numpy arrays instead of one `addRow` per constraint keeps model construction
well below the solve time even at thousands of columns.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable, Sequence

import highspy
import numpy as np

INF = float("inf")


def _construct_first_highs_silently() -> None:
    """HiGHS >= 1.16 prints a banner straight to file descriptor 1 when a process constructs its
    first `Highs()`, before `output_flag` can be set: that would break `--output json` and the
    operator's JSON log. Construct that first instance with fd 1 pointed at a pipe and pass what
    it printed to the log at debug (stdlib logging: never stdout, even before the log is
    configured). A pipe, not a temporary file: the image runs with a read-only root and may have
    no writable /tmp; the banner (a few hundred bytes) fits the pipe's buffer, so nothing blocks.
    Done once, at import, before any thread of ours writes to stdout."""
    sys.stdout.flush()
    saved = os.dup(1)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 1)
    os.close(write_end)
    try:
        highspy.Highs()  # type: ignore[no-untyped-call]
    finally:
        os.dup2(saved, 1)  # closes the pipe's last write end held as fd 1
        os.close(saved)
    with os.fdopen(read_end, "rb") as capture:
        banner = capture.read().decode(errors="replace").strip()
    if banner:
        logging.getLogger("inferpool.highs").debug("HiGHS banner: %s", banner)


_construct_first_highs_silently()


class LinearModel:
    def __init__(self) -> None:
        self.cost: list[float] = []
        self.lower: list[float] = []
        self.upper: list[float] = []
        self.integer: list[bool] = []
        self.row_lower: list[float] = []
        self.row_upper: list[float] = []
        self.row_start: list[int] = [0]
        self.row_index: list[int] = []
        self.row_value: list[float] = []

    @property
    def num_cols(self) -> int:
        return len(self.cost)

    @property
    def num_rows(self) -> int:
        return len(self.row_lower)

    def var(self, lower: float = 0.0, upper: float = INF, integer: bool = False) -> int:
        self.cost.append(0.0)
        self.lower.append(lower)
        self.upper.append(upper)
        self.integer.append(integer)
        return len(self.cost) - 1

    def row(self, entries: Iterable[tuple[int, float]], lower: float, upper: float) -> int:
        merged: dict[int, float] = {}
        for col, value in entries:
            merged[col] = merged.get(col, 0.0) + value
        for col in sorted(merged):
            if merged[col] != 0.0:
                self.row_index.append(col)
                self.row_value.append(merged[col])
        self.row_start.append(len(self.row_index))
        self.row_lower.append(lower)
        self.row_upper.append(upper)
        return len(self.row_lower) - 1

    def to_highs(
        self, objective: Sequence[float] | None = None, relax: bool = False
    ) -> highspy.Highs:
        lp = highspy.HighsLp()
        lp.num_col_ = self.num_cols
        lp.num_row_ = self.num_rows
        lp.col_cost_ = np.asarray(objective if objective is not None else self.cost, dtype=float)
        lp.col_lower_ = np.asarray(self.lower, dtype=float)
        lp.col_upper_ = np.asarray(self.upper, dtype=float)
        lp.row_lower_ = np.asarray(self.row_lower, dtype=float)
        lp.row_upper_ = np.asarray(self.row_upper, dtype=float)
        lp.a_matrix_.format_ = highspy.MatrixFormat.kRowwise
        lp.a_matrix_.num_col_ = self.num_cols
        lp.a_matrix_.num_row_ = self.num_rows
        lp.a_matrix_.start_ = np.asarray(self.row_start, dtype=np.int32)
        lp.a_matrix_.index_ = np.asarray(self.row_index, dtype=np.int32)
        lp.a_matrix_.value_ = np.asarray(self.row_value, dtype=float)
        if not relax and any(self.integer):
            lp.integrality_ = [
                highspy.HighsVarType.kInteger if i else highspy.HighsVarType.kContinuous
                for i in self.integer
            ]
        h = new_highs()
        h.passModel(lp)
        return h

    def dense_rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(start, index, value) arrays of the row-wise matrix, for exporters."""
        return (
            np.asarray(self.row_start, dtype=np.int64),
            np.asarray(self.row_index, dtype=np.int64),
            np.asarray(self.row_value, dtype=float),
        )


def new_highs() -> highspy.Highs:
    """A silent, single-threaded HiGHS: deterministic, and polite on a shared machine."""
    h = highspy.Highs()  # type: ignore[no-untyped-call]  # highspy's __init__ is unannotated
    h.setOptionValue("output_flag", False)
    h.setOptionValue("threads", 1)
    return h
