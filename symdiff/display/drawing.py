"""Pictures of a :class:`~symdiff.display.compgraph.ComputationalGraph`: Graphviz DOT, SVG, PNG.

Three engines draw the same picture: Graphviz's ``dot`` program when it is on the
PATH (the nicer layout), otherwise matplotlib (the ``plot`` extra; no system
package needed) with a layered left-to-right layout of our own, and, with neither,
that same layout written as SVG directly, so that a plain install still draws. Both use the
tutorials' convention: forward values in blue, written above each edge and in
each node; adjoints in red, written below. A node's red number is
d(output)/d(node); an edge's is the part of its source's adjoint that flows back
through that use (the two agree unless the source feeds several operations).
"""

from __future__ import annotations

import html
import io
import shutil
import subprocess
from pathlib import Path

from ..errors import SymdiffError

FORWARD_COLOUR = "#1f5fbf"
BACKWARD_COLOUR = "#c0392b"
FORMATS = (".svg", ".png", ".pdf")
_OP_LABEL = {"add": "+", "sub": "−", "mul": "×", "div": "÷", "neg": "−x"}


def op_label(node) -> str:
    """The operation as the picture writes it: ``+``, ``×``, ``**2``, ``exp``."""
    if node.op == "powi":
        return f"**{node.exponent}"
    return _OP_LABEL.get(node.op, node.op)


def _legend(graph) -> str:
    return (f"blue: forward value    red: adjoint d {graph.output_label}/d node; "
            f"on an edge, the part that flows back through it")


# -- DOT ------------------------------------------------------------------------------

def _quote(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _coloured(text: str, colour: str) -> str:
    return f'<FONT COLOR="{colour}">{html.escape(text)}</FONT>'


def to_dot(graph) -> str:
    """The DOT source of ``graph`` (HTML-like labels, left to right)."""
    from .compgraph import format_value

    lines = [
        "digraph computational_graph {",
        "  rankdir=LR;",
        '  node [shape=box, style="rounded", fontname="Helvetica", fontsize=11];',
        '  edge [fontname="Helvetica", fontsize=10, arrowsize=0.7];',
    ]
    for node in graph.nodes:
        if node.op == "constant":
            lines.append(f'  {_quote(node.name)} [label={_quote(node.name)}, shape=plaintext, '
                         f'fontcolor="#666666"];')
            continue
        title = _title(node)
        parts = [f"<B>{html.escape(title)}</B>", _coloured(format_value(node.value, 4), FORWARD_COLOUR)]
        if node.adjoint is not None:
            parts.append(_coloured(format_value(node.adjoint, 4), BACKWARD_COLOUR))
        extra = ", peripheries=2" if node.name == graph.output else ""
        lines.append(f"  {_quote(node.name)} [label=<{'<BR/>'.join(parts)}>{extra}];")
    for edge in graph.edges:
        parts = [_coloured(format_value(edge.value, 4), FORWARD_COLOUR)]
        if edge.adjoint is not None:
            parts.append(_coloured(format_value(edge.adjoint, 4), BACKWARD_COLOUR))
        lines.append(f"  {_quote(edge.source)} -> {_quote(edge.target)} [label=<{'<BR/>'.join(parts)}>];")
    lines.append(f"  label={_quote(_legend(graph))};")
    lines.append("  labelloc=b; fontsize=10; fontname=\"Helvetica\";")
    lines.append("}")
    return "\n".join(lines) + "\n"


# -- rendering ------------------------------------------------------------------------

def render(graph, path, engine: str = "auto") -> Path:
    """Draw ``graph`` into ``path`` (its suffix picks SVG, PNG or PDF); returns the path."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise SymdiffError(f"cannot render to {str(path)!r}: the file name must end in "
                           f"{', '.join(FORMATS)}")
    if not path.parent.is_dir():
        raise SymdiffError(f"cannot render to {str(path)!r}: directory {str(path.parent)!r} does not exist")
    engine = _engine(engine, suffix)
    if engine == "graphviz":
        _run_dot(graph, ["-T" + suffix[1:], "-o", str(path)])
    elif engine == "svg":
        path.write_text(_plain_svg(graph), encoding="utf-8")
    else:
        _save(_matplotlib_figure(graph), path, suffix[1:])
    return path


def svg_text(graph) -> str:
    """The picture as SVG text (for Jupyter)."""
    engine = _engine("auto", ".svg")
    if engine == "graphviz":
        return _run_dot(graph, ["-Tsvg"])
    if engine == "svg":
        return _plain_svg(graph)
    buffer = io.StringIO()
    _save(_matplotlib_figure(graph), buffer, "svg")
    return buffer.getvalue()


def _save(figure, target, fmt: str) -> None:
    """Save with text kept as text in SVG (searchable, selectable, small)."""
    import matplotlib
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        figure.savefig(target, format=fmt, dpi=_dpi(figure))


def _engine(engine: str, suffix: str = ".svg") -> str:
    if engine not in ("auto", "graphviz", "matplotlib", "svg"):
        raise SymdiffError(f"engine must be 'auto', 'graphviz', 'matplotlib' or 'svg', got {engine!r}")
    if engine == "svg":
        if suffix != ".svg":
            raise SymdiffError(f"engine='svg' writes SVG only, not {suffix}")
        return "svg"
    if engine in ("auto", "graphviz") and shutil.which("dot"):
        return "graphviz"
    if engine == "graphviz":
        raise SymdiffError("engine='graphviz' needs Graphviz's `dot` program on the PATH "
                           "(e.g. apt install graphviz); engine='matplotlib' needs no system package")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        if engine == "auto" and suffix == ".svg":
            return "svg"
        raise SymdiffError(f"drawing the graph as {suffix} needs matplotlib (pip install "
                           "'symdiff-llvm[plot]') or Graphviz's `dot` program on the PATH; a .svg "
                           "file needs neither; print(g) shows the table, g.dot() the DOT source") from None
    return "matplotlib"


def _run_dot(graph, options) -> str:
    try:
        done = subprocess.run(["dot", *options], input=to_dot(graph), capture_output=True,
                              text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise SymdiffError(f"Graphviz's dot failed: {error}") from None
    if done.returncode != 0:
        raise SymdiffError(f"Graphviz's dot failed: {done.stderr.strip()}")
    return done.stdout


# -- the matplotlib drawing -------------------------------------------------------------

EDGE_LENGTH = 1.55   # data units between the boxes of neighbouring layers
ROW_GAP = 1.25       # between nodes of one layer
BOX_WIDTH, BOX_HEIGHT = 1.45, 0.9   # the narrowest box; wider for long names
CHAR_WIDTH = 0.115   # data units per character of a bold title
MAX_PIXELS = 12000   # longest side of a PNG


def box_width(graph) -> float:
    """One box width for the picture, wide enough for its longest title."""
    longest = max((len(_title(n)) for n in graph.nodes if n.op != "constant"), default=0)
    return max(BOX_WIDTH, CHAR_WIDTH * longest + 0.3)


def _title(node) -> str:
    return node.name if node.op == "input" else f"{op_label(node)}  ({node.name})"


def layout(graph, column_gap: float) -> dict:
    """{node name: (x, y)}: columns by layer, each column ordered to keep edges short
    (a few barycentre sweeps, the classic layered-drawing heuristic), centred on y = 0."""
    columns: dict = {}
    for node in graph.nodes:
        columns.setdefault(node.layer, []).append(node.name)
    neighbours = {n.name: [] for n in graph.nodes}
    for e in graph.edges:
        neighbours[e.source].append(e.target)
        neighbours[e.target].append(e.source)
    y = {}

    def place(col):
        for k, name in enumerate(col):
            y[name] = (len(col) - 1) / 2 - k

    for col in columns.values():
        place(col)
    order = sorted(columns)
    for sweep in range(6):
        for layer in (order if sweep % 2 == 0 else reversed(order)):
            col = columns[layer]
            barycentre = {name: (sum(y[m] for m in neighbours[name]) / len(neighbours[name])
                                 if neighbours[name] else y[name]) for name in col}
            col.sort(key=lambda name: -barycentre[name])
            place(col)
    return {name: (graph[name].layer * column_gap, y[name] * ROW_GAP) for name in y}


def _geometry(graph):
    """Box width, column gap, {node: (x, y)} and the picture's bounds (x0, x1, y0, y1)."""
    width = box_width(graph)
    column_gap = width + EDGE_LENGTH
    position = layout(graph, column_gap)
    xs = [p[0] for p in position.values()]
    ys = [p[1] for p in position.values()]
    return (width, column_gap, position,
            (min(xs) - width, max(xs) + width, min(ys) - BOX_HEIGHT - 0.5, max(ys) + BOX_HEIGHT))


def _edge_points(graph, edge, width, column_gap, position):
    """An edge's start and end, and where its forward value (above) and adjoint (below) go."""
    (sx, sy), (tx, ty) = position[edge.source], position[edge.target]
    start, end = (sx + width / 2, sy), (tx - width / 2, ty)
    if graph[edge.source].op == "constant":
        start = (sx + 0.3, sy)
    span = end[0] - start[0]
    t = 0.5 if span <= column_gap else 1 - 0.6 * column_gap / span
    dx, dy = end[0] - start[0], end[1] - start[1]
    length = max((dx * dx + dy * dy) ** 0.5, 1e-9)
    nx, ny = -dy / length * 0.17, dx / length * 0.17  # the normal pointing above the edge
    mx, my = start[0] + t * dx, start[1] + t * dy
    return start, end, (mx + nx, my + ny), (mx - nx, my - ny)


def _matplotlib_figure(graph):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    from .compgraph import format_value

    width, column_gap, position, (x0, x1, y0, y1) = _geometry(graph)
    scale = 0.75  # inches per data unit
    figure = Figure(figsize=(max((x1 - x0) * scale, 4.0), max((y1 - y0) * scale, 2.5)))
    FigureCanvasAgg(figure)
    ax = figure.add_axes((0, 0, 1, 1))
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_axis_off()
    font = 9

    for edge in graph.edges:
        start, end, above, below = _edge_points(graph, edge, width, column_gap, position)
        ax.add_artist(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=10,
                                     color="#555555", linewidth=0.9, shrinkA=0, shrinkB=1, zorder=1))
        ax.text(*above, format_value(edge.value, 4), color=FORWARD_COLOUR, fontsize=font - 1,
                ha="center", va="center", zorder=4)
        if edge.adjoint is not None:
            ax.text(*below, format_value(edge.adjoint, 4), color=BACKWARD_COLOUR,
                    fontsize=font - 1, ha="center", va="center", zorder=4)

    for node in graph.nodes:
        x, y = position[node.name]
        if node.op == "constant":
            ax.text(x, y, node.name, color="#666666", fontsize=font, ha="center", va="center")
            continue
        output = node.name == graph.output
        ax.add_artist(FancyBboxPatch((x - width / 2, y - BOX_HEIGHT / 2), width, BOX_HEIGHT,
                                    boxstyle="round,pad=0.02,rounding_size=0.12",
                                    facecolor="#fff8e1" if output else "#f4f6fb",
                                    edgecolor="#333333", linewidth=1.6 if output else 0.9, zorder=2))
        ax.text(x, y + 0.24, _title(node), fontsize=font + 1, ha="center", va="center",
                weight="bold", zorder=3)
        ax.text(x, y, format_value(node.value, 4), color=FORWARD_COLOUR, fontsize=font,
                ha="center", va="center", zorder=3)
        if node.adjoint is not None:
            ax.text(x, y - 0.24, format_value(node.adjoint, 4), color=BACKWARD_COLOUR, fontsize=font,
                    ha="center", va="center", zorder=3)
    ax.text((x0 + x1) / 2, y0 + 0.15, _legend(graph), fontsize=font - 1, ha="center", va="bottom",
            color="#444444")
    return figure


def _plain_svg(graph) -> str:
    """The matplotlib drawing's layout and colours, written as SVG by hand (no dependency)."""
    from .compgraph import format_value

    width, column_gap, position, (x0, x1, y0, y1) = _geometry(graph)
    unit = 54.0  # pixels per data unit (0.75 inch at 72 px per inch, as the matplotlib figure)

    def px(x, y):
        return (x - x0) * unit, (y1 - y) * unit

    def text(x, y, value, colour="#000000", size=9, bold=False):
        X, Y = px(x, y)
        weight = ' font-weight="bold"' if bold else ""
        return (f'<text x="{X:.1f}" y="{Y:.1f}" fill="{colour}" font-size="{size * 1.33:.1f}"{weight} '
                f'text-anchor="middle" dominant-baseline="central" xml:space="preserve">{html.escape(value)}</text>')

    W, H = (x1 - x0) * unit, (y1 - y0) * unit
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W:.0f}" height="{H:.0f}" '
           f'viewBox="0 0 {W:.0f} {H:.0f}" font-family="Helvetica, Arial, sans-serif">',
           '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
           'markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" '
           'fill="#555555"/></marker></defs>', f'<rect width="{W:.0f}" height="{H:.0f}" fill="white"/>']
    for edge in graph.edges:
        start, end, above, below = _edge_points(graph, edge, width, column_gap, position)
        (X0, Y0), (X1, Y1) = px(*start), px(*end)
        out.append(f'<line x1="{X0:.1f}" y1="{Y0:.1f}" x2="{X1:.1f}" y2="{Y1:.1f}" stroke="#555555" '
                   f'stroke-width="1.2" marker-end="url(#arrow)"/>')
        out.append(text(*above, format_value(edge.value, 4), FORWARD_COLOUR, 8))
        if edge.adjoint is not None:
            out.append(text(*below, format_value(edge.adjoint, 4), BACKWARD_COLOUR, 8))
    for node in graph.nodes:
        x, y = position[node.name]
        if node.op == "constant":
            out.append(text(x, y, node.name, "#666666"))
            continue
        output = node.name == graph.output
        X, Y = px(x - width / 2, y + BOX_HEIGHT / 2)
        out.append(f'<rect x="{X:.1f}" y="{Y:.1f}" width="{width * unit:.1f}" height="{BOX_HEIGHT * unit:.1f}" '
                   f'rx="6" fill="{"#fff8e1" if output else "#f4f6fb"}" stroke="#333333" '
                   f'stroke-width="{2.2 if output else 1.2}"/>')
        out.append(text(x, y + 0.24, _title(node), size=10, bold=True))
        out.append(text(x, y, format_value(node.value, 4), FORWARD_COLOUR))
        if node.adjoint is not None:
            out.append(text(x, y - 0.24, format_value(node.adjoint, 4), BACKWARD_COLOUR))
    out.append(text((x0 + x1) / 2, y0 + 0.3, _legend(graph), "#444444", 8))
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _dpi(figure) -> float:
    width, height = figure.get_size_inches()
    return min(110.0, MAX_PIXELS / max(width, height))
