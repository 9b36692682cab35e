"""The computational graph and the chain rule: the tutorials' shopping bill, then a small network.

A coat costs 400, a pair of trousers 300; we buy one coat and two pairs of
trousers and pay 70% (30% off). ``sd.computational_graph`` builds the graph symdiff
differentiates and evaluates it at those prices: the forward pass gives every node's
value (trousers 600, subtotal 1000, total 700), the backward pass every node's
adjoint, the derivative of the total with respect to that node (0.7 for the
subtotal; 0.7, 1.4, 210 and 1000 for the four inputs). The script prints the
table, checks the adjoints against ``sd.grad`` of the whole formula and a compiled
kernel, then does the same for one sample of a two-layer network's squared error.

Writes ``shopping_graph.svg`` and ``two_layer_network_graph.svg`` into ``--out``
(default: the current directory), drawn by Graphviz when its ``dot`` program is
installed, else by matplotlib.

Run: python examples/computational_graph.py [--out DIR]
"""

import argparse
from pathlib import Path

import numpy as np
import sympy as sp

import symdiff as sd

coat_price, trouser_price, trouser_count, pay_fraction = sp.symbols(
    "coat_price trouser_price trouser_count pay_fraction", real=True
)
inputs = [coat_price, trouser_price, trouser_count, pay_fraction]
prices = {coat_price: 400, trouser_price: 300, trouser_count: 2, pay_fraction: 0.7}


def shopping(out: Path):
    total = (coat_price + trouser_price * trouser_count) * pay_fraction
    graph = sd.computational_graph(total, wrt=inputs, at=prices, output_name="total")
    print(f"total = {total} at " + ", ".join(f"{s} = {v:g}" for s, v in prices.items()))
    print(graph)

    subtotal = next(node for node in graph if node.op == "add")
    print(f"\nthe subtotal node {subtotal.name} = {subtotal.value:g}: d total/d subtotal = "
          f"{subtotal.adjoint:g} (the paid fraction), passed unchanged to coat_price and to the "
          f"trousers node, which multiplies it by the other factor: 0.7 * 2 = 1.4 per unit of "
          f"trouser price, 0.7 * 300 = 210 per pair")

    gradient = sd.grad(total, inputs)
    print("\nsd.grad of the whole formula gives the same adjoints:")
    for symbol, formula in zip(inputs, gradient):
        value = float(formula.subs(prices))
        print(f"  d total/d {symbol.name:<13} = {str(formula):<36} = {value:g}")
        assert np.isclose(value, graph[symbol.name].adjoint)

    kernel = sd.Objective(total, params=inputs, data=[]).compile()
    theta = np.array([float(prices[symbol]) for symbol in inputs])
    value, numeric = kernel(theta, np.empty((1, 0)))
    print(f"and so does the compiled kernel: total {value:g}, gradient "
          + ", ".join(f"{g:g}" for g in numeric))
    assert np.isclose(value, 700.0)
    assert np.allclose(numeric, [graph[s.name].adjoint for s in inputs])
    path = graph.render(out / "shopping_graph.svg")
    print(f"saved {path}")


def two_layer_network(out: Path):
    x, y = sp.symbols("x y", real=True)
    prediction, params = sd.mlp([x], hidden=(2,))
    objective = sd.Objective((prediction - y) ** 2, params=params, data=[x, y])
    theta = [0.5, -0.3, 0.1, 0.2, 0.8, -0.6, 0.05]  # W1_0_0 W1_1_0 b1_0 b1_1 W2_0_0 W2_0_1 b2_0
    sample = {x: 1.5, y: 0.4}
    graph = objective.computational_graph(theta, sample)
    print(f"\ntwo-layer network {prediction}\nsquared error for one sample x = 1.5, y = 0.4:")
    print(graph)
    at = {**dict(zip(params, theta)), **sample}
    for p in params:
        assert np.isclose(graph[p.name].adjoint, float(sp.diff(objective.loss, p).subs(at)))
    print("every parameter's adjoint equals d loss/d parameter from sympy.diff at this sample")
    path = graph.render(out / "two_layer_network_graph.svg")
    print(f"saved {path}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     epilog="Output files go to --out (default: the current directory).")
    parser.add_argument("--out", type=Path, default=Path("."),
                        help="directory for shopping_graph.svg and two_layer_network_graph.svg "
                        "(default: the current directory)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    shopping(args.out)
    two_layer_network(args.out)


if __name__ == "__main__":
    main()
