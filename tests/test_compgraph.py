"""sd.computational_graph: values against direct evaluation, adjoints against sympy.diff,
DOT structure, pictures without Graphviz, large graphs, readable names."""

import math
import os
import re

import pytest
import sympy as sp

import symdiff as sd
from symdiff.display.compgraph import MAX_DRAWN_NODES
from symdiff.errors import FormulaError, SymdiffError

coat, trouser, count, pay = sp.symbols("coat trouser count pay")
SHOPPING = dict(expr=(coat + trouser * count) * pay, wrt=[coat, trouser, count, pay],
                at={coat: 400, trouser: 300, count: 2, pay: 0.7})

x, y, z, w, b = sp.symbols("x y z w b", real=True)
FORMULAS = [
    (sp.exp(-x * y) * sp.sin(z) + x / (1 + y ** 2), {x: 0.7, y: -1.3, z: 0.4}),
    (sp.log(1 + x ** 2) * sp.tanh(w * x + b) - sp.sqrt(y), {x: 1.1, w: -0.6, b: 0.2, y: 2.5}),
    ((w * x + b - y) ** 2 + (w * x + b) * sp.cos(w * x + b), {x: 0.3, w: 1.7, b: -0.4, y: 0.9}),
    (sp.atan(x / y) - sp.exp(x) ** 2 + 3 * x * y * z, {x: 0.25, y: 1.5, z: -2.0}),
]

# A reference for each node's operation, written in SymPy on the test side.
_REFERENCE = {
    "add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b, "neg": lambda a: -a, "pow": lambda a, b: a ** b,
    "exp": sp.exp, "log": sp.log, "sin": sp.sin, "cos": sp.cos, "tanh": sp.tanh, "sqrt": sp.sqrt,
    "atan": sp.atan, "log1p": lambda a: sp.log(1 + a),
}


def reference_expressions(g):
    """{node name: SymPy expression in the input symbols}, rebuilt from the table's operations."""
    expr = {}
    for node in g.nodes:
        if node.op == "input":
            expr[node.name] = sp.Symbol(node.name, real=True)
        elif node.op == "constant":
            expr[node.name] = sp.nsimplify(node.value)
        elif node.op == "powi":
            expr[node.name] = expr[node.inputs[0]] ** node.exponent
        else:
            expr[node.name] = _REFERENCE[node.op](*(expr[a] for a in node.inputs))
    return expr


def real_point(at):
    return {sp.Symbol(s.name, real=True): v for s, v in at.items()}


def test_shopping_table_has_intermediate_nodes_with_values_and_adjoints():
    g = sd.computational_graph(**SHOPPING)
    by_op = {(n.op, n.value): n for n in g.nodes}
    subtotal = by_op[("add", 1000.0)]
    trousers = by_op[("mul", 600.0)]
    total = g[g.output]
    assert subtotal.adjoint == pytest.approx(0.7)
    assert trousers.adjoint == pytest.approx(0.7)
    assert total.value == pytest.approx(700.0) and total.adjoint == 1.0
    assert set(subtotal.inputs) == {"coat", trousers.name}
    expected = {"coat": 0.7, "trouser": 1.4, "count": 210.0, "pay": 1000.0}
    assert {name: g[name].adjoint for name in expected} == pytest.approx(expected)
    table = str(g)
    assert "d output/d node" in table.splitlines()[0]
    row = next(line for line in table.splitlines() if line.startswith(subtotal.name + " "))
    assert row.split() == [subtotal.name, "add", f"{subtotal.inputs[0]},", subtotal.inputs[1], "1000", "0.7"]


@pytest.mark.parametrize("expr, at", FORMULAS, ids=range(len(FORMULAS)))
def test_values_match_direct_evaluation_and_adjoints_match_sympy_diff(expr, at):
    wrt = sorted(expr.free_symbols, key=lambda s: s.name)
    g = sd.computational_graph(expr, wrt=wrt, at=at)
    reference = reference_expressions(g)
    point = real_point(at)
    for node in g.nodes:
        assert node.value == pytest.approx(float(reference[node.name].subs(point)), rel=1e-12, abs=1e-12)
    assert sp.simplify(reference[g.output] - expr) == 0
    assert g[g.output].value == pytest.approx(float(expr.subs(at)), rel=1e-12)
    for s in wrt:
        assert g[s.name].adjoint == pytest.approx(float(sp.diff(expr, s).subs(at)), rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("expr, at", FORMULAS, ids=range(len(FORMULAS)))
def test_every_adjoint_is_the_chain_rule_over_its_consumers(expr, at):
    """adjoint(n) = sum over edges n -> c of adjoint(c) * d c / d n, the local derivative by sympy.diff."""
    g = sd.computational_graph(expr, at=at)
    reference, point = reference_expressions(g), real_point(at)
    incoming = {n.name: 0.0 for n in g.nodes}
    for edge in g.edges:
        target = g[edge.target]
        if g[edge.source].op == "constant":
            assert edge.adjoint is None
            continue
        args = [sp.Symbol(f"arg{k}") for k in range(len(target.inputs))]
        local = sp.diff(_local(target, args), args[edge.position])
        value = float(local.subs({a: reference[n] for a, n in zip(args, target.inputs)}).subs(point))
        assert edge.adjoint == pytest.approx(target.adjoint * value, rel=1e-10, abs=1e-12)
        incoming[edge.source] += edge.adjoint
    for node in g.nodes:
        if node.op != "constant" and node.name != g.output:
            assert node.adjoint == pytest.approx(incoming[node.name], rel=1e-10, abs=1e-12)


def _local(node, args):
    if node.op == "powi":
        return args[0] ** node.exponent
    return _REFERENCE[node.op](*args)


def test_nodes_without_a_wrt_symbol_below_have_no_adjoint():
    g = sd.computational_graph((w * x + b - y) ** 2, wrt=[w, b], at={w: 2, b: 1, x: 3, y: 4})
    assert g["x"].adjoint is None and g["y"].adjoint is None
    assert g["w"].adjoint == pytest.approx(2 * (2 * 3 + 1 - 4) * 3)
    assert g["b"].adjoint == pytest.approx(2 * (2 * 3 + 1 - 4))


def test_shared_subexpression_is_one_node_whose_adjoint_sums_its_uses():
    u = w * x + b
    expr = sp.tanh(u) * u
    at = {w: 0.5, x: 2.0, b: -0.3}
    g = sd.computational_graph(expr, wrt=[w, b], at=at)
    shared = [n for n in g.nodes if n.op == "add"]
    assert len(shared) == 1
    uses = [e for e in g.edges if e.source == shared[0].name]
    assert len(uses) == 2
    assert shared[0].adjoint == pytest.approx(sum(e.adjoint for e in uses))
    assert shared[0].adjoint == pytest.approx(float(sp.diff(sp.tanh(z) * z, z).subs(z, 0.7)))


def test_comparisons_have_boolean_values_and_no_adjoint():
    expr = sp.Piecewise((x ** 2, x > 1), (-x, True)) + sp.Max(x, y)
    g = sd.computational_graph(expr, wrt=[x, y], at={x: 2.0, y: 0.5})
    booleans = [n for n in g.nodes if isinstance(n.value, bool)]
    assert booleans and all(n.adjoint is None for n in booleans)
    assert g["x"].adjoint == pytest.approx(2 * 2.0 + 1.0)
    assert g["y"].adjoint == pytest.approx(0.0)
    assert "true" in str(g)


def test_at_must_cover_the_formula_and_nothing_else():
    with pytest.raises(FormulaError, match="no value for 'pay'"):
        sd.computational_graph(SHOPPING["expr"], at={coat: 1, trouser: 1, count: 1})
    with pytest.raises(FormulaError, match="'shoes'"):
        sd.computational_graph(SHOPPING["expr"], at={**SHOPPING["at"], "shoes": 3})
    with pytest.raises(FormulaError, match="finite"):
        sd.computational_graph(SHOPPING["expr"], at={**SHOPPING["at"], pay: math.inf})
    g = sd.computational_graph("(coat + trouser*count)*pay",
                               at={"coat": 400, "trouser": 300, "count": 2, "pay": 0.7})
    assert g["pay"].adjoint == pytest.approx(1000.0)


# -- DOT --------------------------------------------------------------------------------

_STATEMENT = re.compile(r'^\s*("(?:[^"\\]|\\.)*")(?:\s*->\s*("(?:[^"\\]|\\.)*"))?\s*\[(.*)\];\s*$')


def parse_dot(text):
    """Node and edge statements of our DOT output; fails on anything it cannot read."""
    lines = text.strip().splitlines()
    assert lines[0] == "digraph computational_graph {" and lines[-1] == "}"
    nodes, edges = {}, []
    for line in lines[1:-1]:
        m = _STATEMENT.match(line)
        if m is None:
            assert re.match(r"^\s*(\w+\s*\[.*\]|(\w+=(\"[^\"]*\"|[\w.]+);\s*)+)\s*;?\s*$", line), line
            continue
        attributes = m.group(3)
        label = re.search(r"label=(<.*>|\"[^\"]*\")", attributes)
        assert label, line
        if label.group(1).startswith("<"):
            assert label.group(1).count("<") == label.group(1).count(">"), line
        source = m.group(1)[1:-1]
        if m.group(2) is None:
            nodes[source] = label.group(1)
        else:
            edges.append((source, m.group(2)[1:-1], label.group(1)))
    return nodes, edges


def test_dot_has_one_node_per_graph_node_and_the_graph_edges():
    g = sd.computational_graph(**SHOPPING)
    nodes, edges = parse_dot(g.dot())
    assert set(nodes) == {n.name for n in g.nodes}
    assert sorted((s, t) for s, t, _ in edges) == sorted((e.source, e.target) for e in g.edges)
    subtotal = next(n for n in g.nodes if n.op == "add")
    assert "1000" in nodes[subtotal.name] and "0.7" in nodes[subtotal.name]
    pay_edge = next(label for s, _, label in edges if s == "pay")
    assert "0.7" in pay_edge and "1000" in pay_edge
    assert "rankdir=LR" in g.dot()


# -- pictures without Graphviz ------------------------------------------------------------

@pytest.fixture
def no_graphviz(monkeypatch, tmp_path):
    """Hide any `dot` program: PATH holds one empty directory."""
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    import shutil
    assert shutil.which("dot") is None


@pytest.mark.parametrize("suffix, magic", [(".png", b"\x89PNG"), (".svg", b"<?xml")])
def test_render_without_graphviz_draws_with_matplotlib(no_graphviz, tmp_path, suffix, magic):
    pytest.importorskip("matplotlib")
    coat_price = sp.Symbol("coat_price")
    g = sd.computational_graph((coat_price + trouser * count) * pay,
                               at={coat_price: 400, trouser: 300, count: 2, pay: 0.7})
    path = g.render(tmp_path / f"shopping{suffix}")
    assert path.read_bytes().startswith(magic)
    if suffix == ".svg":
        text = path.read_text()
        assert "coat_price" in text and "1000" in text
        assert "#1f5fbf" in text and "#c0392b" in text  # forward and backward colours


@pytest.fixture
def no_matplotlib(monkeypatch):
    """Make ``import matplotlib`` fail, as after the README's plain install."""
    import builtins
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)


def test_plain_install_still_draws_svg_and_says_what_png_needs(no_graphviz, no_matplotlib, tmp_path):
    import xml.etree.ElementTree as ET

    coat_price = sp.Symbol("coat_price")
    g = sd.computational_graph((coat_price + trouser * count) * pay,
                               at={coat_price: 400, trouser: 300, count: 2, pay: 0.7})
    path = g.render(tmp_path / "shopping.svg")
    root = ET.fromstring(path.read_text())  # well-formed SVG
    texts = [(t.text, t.get("fill")) for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert ("coat_price", "#000000") in texts
    assert ("1000", "#1f5fbf") in texts and ("0.7", "#c0392b") in texts  # subtotal: value, adjoint
    assert len(list(root.iter("{http://www.w3.org/2000/svg}rect"))) == len(g.nodes) + 1  # + background
    assert len(list(root.iter("{http://www.w3.org/2000/svg}line"))) == len(g.edges)
    assert "<svg" in g._repr_html_()
    with pytest.raises(SymdiffError, match=r"\.png needs matplotlib .* a \.svg file needs neither"):
        g.render(tmp_path / "shopping.png")


def test_graphviz_is_used_when_dot_is_on_the_path(monkeypatch, tmp_path):
    """A stand-in `dot` that copies its input to the -o file: the DOT source reaches Graphviz."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "dot"
    fake.write_text('#!/bin/sh\nwhile [ "$1" != "-o" ]; do shift; done\ncat > "$2"\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir) + os.pathsep + os.environ.get("PATH", ""))
    g = sd.computational_graph(**SHOPPING)
    path = g.render(tmp_path / "shopping.svg")
    assert path.read_text() == g.dot()


def test_graphviz_engine_without_dot_says_what_to_install(no_graphviz, tmp_path):
    g = sd.computational_graph(**SHOPPING)
    with pytest.raises(SymdiffError, match="Graphviz"):
        g.render(tmp_path / "x.svg", engine="graphviz")


def test_render_checks_the_path_first(tmp_path):
    g = sd.computational_graph(**SHOPPING)
    with pytest.raises(SymdiffError, match="missing"):
        g.render(tmp_path / "missing" / "x.png")
    with pytest.raises(SymdiffError, match="x.txt"):
        g.render(tmp_path / "x.txt")


def test_jupyter_shows_the_picture_and_falls_back_to_the_table(no_graphviz, monkeypatch):
    pytest.importorskip("matplotlib")
    g = sd.computational_graph(**SHOPPING)
    assert "<svg" in g._repr_html_()
    import symdiff.display.drawing as drawing

    def unavailable(engine, suffix=".svg"):
        raise SymdiffError("no drawing engine")
    monkeypatch.setattr(drawing, "_engine", unavailable)
    html = g._repr_html_()
    assert html.startswith("<pre>") and "1000" in html


# -- large graphs --------------------------------------------------------------------------

def test_large_graph_refuses_to_draw_and_says_how_to_draw_a_part(tmp_path):
    xs = sp.symbols("x0:120")
    expr = sum(sp.sin(xi) * xs[(k + 1) % len(xs)] for k, xi in enumerate(xs))
    g = sd.computational_graph(expr, at={xi: 0.01 * k for k, xi in enumerate(xs)})
    assert len(g) > MAX_DRAWN_NODES
    with pytest.raises(SymdiffError, match=r"subgraph\("):
        g.dot()
    with pytest.raises(SymdiffError, match=r"subgraph\("):
        g.render(tmp_path / "big.svg")
    assert not (tmp_path / "big.svg").exists()
    table = str(g)
    assert "not shown" in table and len(table.splitlines()) < 70
    assert len(g.table(limit=None).splitlines()) == len(g) + 2
    assert "<pre>" in g._repr_html_() and "subgraph" in g._repr_html_()
    part = g.subgraph(g.output, depth=2)
    assert 1 < len(part) < 10 and part[g.output].adjoint == 1.0
    nodes, _ = parse_dot(part.dot())
    assert set(nodes) == {n.name for n in part.nodes}
    whole = g.subgraph("t3")
    assert all(n.value == g[n.name].value and n.adjoint == g[n.name].adjoint for n in whole.nodes)


# -- objectives and names ---------------------------------------------------------------------

def test_objective_graph_has_the_loss_as_output():
    o = sd.Objective((w * x + b - y) ** 2, [w, b])
    g = o.computational_graph([2.0, 1.0], {x: 3.0, y: 4.0})
    assert g.output_label == "loss" and "d loss/d node" in str(g)
    assert g[g.output].value == pytest.approx(9.0)
    for p in (w, b):
        assert g[p.name].adjoint == pytest.approx(float(sp.diff(o.loss, p).subs({w: 2, b: 1, x: 3, y: 4})))
    same = o.computational_graph({"w": 2.0, "b": 1.0}, [3.0, 4.0])
    assert [n.adjoint for n in same.nodes] == [n.adjoint for n in g.nodes]
    with pytest.raises(FormulaError, match="sample has 1 values"):
        o.computational_graph([2.0, 1.0], [3.0])


def test_word_names_stay_whole_in_latex():
    coat_price, w_1 = sp.symbols("coat_price w_1", real=True)
    text = sd.Objective((coat_price * x + w_1 - y) ** 2, [coat_price, w_1]).latex()
    assert r"coat\_price" in text and "coat_{price}" not in text
    assert "w_{1}" in text
    from symdiff.display.names import is_word_name
    assert [is_word_name(n) for n in ("pay_fraction", "x_max", "theta_0", "w1", "lr_0")] == \
        [True, False, False, False, True]
