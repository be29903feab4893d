#!/usr/bin/env python3
"""Line plots of benchmark series against a size, as PNG (matplotlib, Agg backend).

A series is (name, xs, ys, unit). Series of one unit share a panel, panels side by side
in the order their units first appear; a y of None (a failed run) is left out. With
log=True (the default) both axes are logarithmic, and a panel gets a dotted line "∝ x"
through its first series' first point (see guide), so a curve that bends above it grows
faster than linearly.

    import plot
    plot.draw([("pgpart", [100, 1000], [0.1, 0.9], "s"),
               ("peak RSS", [100, 1000], [12, 40], "MiB")], "out.png", xlabel="tables")

From the shell (a JSON spec: {"series": [{"name", "xs", "ys", "unit"}, ...], and optional
"title", "xlabel", "note", "log", "guide" (true, false or a list of units)}):

    tools/bench/.venv/bin/python bench/plot.py SPEC.json OUT.png

scripts/bench makes that venv from tools/bench/requirements.txt (pinned matplotlib).
"""
import json
import os
import sys

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _series(s):
    if isinstance(s, dict):
        return s["name"], list(s["xs"]), list(s["ys"]), s.get("unit", "")
    name, xs, ys, unit = s
    return name, list(xs), list(ys), unit


def draw(series, path, *, title=None, xlabel="size", note=None, log=True, guide=True, dpi=110):
    """Draws series (see the module doc) into the PNG path; returns path. guide: the "∝ x"
    line in every panel (True), in none (False), or in the panels of these units (a set);
    a quantity with a large constant part (a process's memory) reads better without it."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter, NullLocator

    series = [_series(s) for s in series]
    units = list(dict.fromkeys(u for _, _, _, u in series))
    if not units:
        raise ValueError("plot.draw: no series")
    fig, axes = plt.subplots(1, len(units), figsize=(6.2 * len(units), 4.8), squeeze=False)
    for ax, unit in zip(axes[0], units):
        anchor = None
        allx, labelled = set(), []
        for name, xs, ys, u in series:
            if u != unit:
                continue
            pts = [(x, y) for x, y in zip(xs, ys) if y is not None and (not log or (x > 0 and y > 0))]
            if not pts:
                continue
            px, py = zip(*pts)
            allx.update(px)
            ax.plot(px, py, marker="o", linewidth=1.6, label=name)
            # the last value beside its point, nudged down when another label is that close
            near = sum(1 for y in labelled if abs(y - py[-1]) <= 0.06 * max(abs(y), abs(py[-1]), 1e-12))
            labelled.append(py[-1])
            ax.annotate(f"{py[-1]:,.0f}" if abs(py[-1]) >= 1000 else f"{py[-1]:.3g}", (px[-1], py[-1]), textcoords="offset points",
                        xytext=(4, -9 * near), fontsize=8, va="center")
            if anchor is None:
                anchor = (px[0], py[0])
        want_guide = guide is True or (guide and not isinstance(guide, bool) and unit in guide)
        if log and want_guide and anchor and len(allx) > 1:
            x0, y0 = anchor
            gx = [min(allx), max(allx)]
            ax.plot(gx, [y0 * x / x0 for x in gx], linestyle=":", color="grey", linewidth=1,
                    label="∝ " + xlabel.split(" ")[0] + " (linear)")
        if log:
            ax.set_xscale("log")
            ax.set_yscale("log")
            # plain numbers (0.05, 2, 150), not 1.5×10^2; a panel whose values span less than
            # a decade shows one decade around them (a flat curve looks flat) with its minor
            # ticks labelled
            ys = [y for _, _, yy, u in series if u == unit for y in yy if y and y > 0]
            narrow = bool(ys) and max(ys) / min(ys) < 10
            if narrow:
                gm = (max(ys) * min(ys)) ** 0.5
                ax.set_ylim(min(min(ys) / 1.2, gm / 10 ** 0.5), max(max(ys) * 1.2, gm * 10 ** 0.5))
            plain = FuncFormatter(lambda v, _: f"{v:g}")
            ax.yaxis.set_major_formatter(plain)
            ax.yaxis.set_minor_formatter(plain if narrow else NullFormatter())
        if allx:  # ticks at the sizes measured, written out (100, 1,000, 10,000)
            ax.xaxis.set_major_locator(FixedLocator(sorted(allx)))
            ax.xaxis.set_minor_locator(NullLocator())
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
        ax.set_xlabel(xlabel)
        ax.set_ylabel(unit)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    if title:
        fig.suptitle(title)
    if note:
        fig.text(0.01, 0.01, note, fontsize=7, color="dimgrey", wrap=True)
    fig.tight_layout(rect=(0, 0.05 if note else 0, 1, 1))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"  # a reader (or a failed draw) never sees half a PNG
    try:
        fig.savefig(tmp, dpi=dpi, format="png", metadata={"Software": None})
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def is_png(path):
    with open(path, "rb") as fh:
        return fh.read(8) == PNG_SIGNATURE


def main(argv):
    if len(argv) != 3 or argv[1] in ("-h", "--help"):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    with open(argv[1]) as fh:
        spec = json.load(fh)
    g = spec.get("guide", True)
    draw(spec["series"], argv[2], title=spec.get("title"), xlabel=spec.get("xlabel", "size"),
         note=spec.get("note"), log=spec.get("log", True), guide=set(g) if isinstance(g, list) else g)
    print(argv[2])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
