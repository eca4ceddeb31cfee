"""What a summary says about itself matches what it holds (issue 18, "smaller things"): the
window-CI footnote mentions a missing per-window file only when a CI is missing, the plot's
legend says "one seed" where there is no spread to show, a long title is wrapped to the figure,
and a summary of two sizes says why it draws no line against size."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from meadow_golf.report import plots, tables  # noqa: E402
from meadow_golf.report.rows import NO_WINDOWS  # noqa: E402


def test_the_footnote_names_a_missing_window_file_only_when_a_ci_is_missing():
    present = [{"ci": {"lo": 1.0, "hi": 2.0}}, {"ci": {"lo": 1.5, "hi": 2.5}}]
    assert NO_WINDOWS not in tables.footnote_cis(2000, 0, present)
    assert NO_WINDOWS in tables.footnote_cis(2000, 0, present + [{"ci": None}])


def test_the_legend_claims_a_spread_only_with_several_seeds():
    assert plots.series_label("Pure-AR", False) == "Pure-AR (one seed)"
    assert plots.series_label("Pure-AR", True) == "Pure-AR (seed mean ± std)"


def test_a_long_title_is_wrapped_to_the_figure_width():
    title = "Scale sweep (PRESET=cpu, w in {0.1 0.3}, MATCH=steps) " * 4
    fig = plt.figure(figsize=(5.5, 4.2))
    try:
        lines = plots.wrapped(title.strip(), fig).splitlines()
    finally:
        plt.close(fig)
    assert len(lines) > 1
    assert max(len(line) for line in lines) <= int(5.5 * 7.5)
    assert " ".join(lines) == " ".join(title.split())


def test_two_sizes_say_why_there_is_no_line():
    fits = {"tax w=0.3": {"fit": None, "reason": "2 sizes; a trend against size needs 3 or more"}}
    assert tables.fits_lines(fits) == ["- tax w=0.3: no line against size (2 sizes; a trend against size needs 3 "
                                       "or more)."]
