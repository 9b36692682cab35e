"""The computational graph and the chain rule, with the tutorials' shopping example.

A coat costs 400, a pair of trousers 300; we buy one coat and two pairs of
trousers and pay 70% (30% off). The forward pass walks the graph

    trousers = trouser_price * trouser_count      = 600
    subtotal = coat_price + trousers              = 1000
    total    = subtotal * pay_fraction            = 700

and the backward pass multiplies local derivatives from the output back to each
input (the chain rule): the total moves by 0.7 per unit of coat price, 1.4 per unit
of trouser price, 210 per extra pair of trousers and 1000 per unit of the paid
fraction. This script prints the graph's local derivatives, the gradient that
``sd.grad`` derives from the whole formula (as formulas and as numbers), and the
same numbers from a compiled kernel.

Run: python examples/computational_graph.py
"""

import numpy as np
import sympy as sp

import symdiff as sd

coat_price, trouser_price, trouser_count, pay_fraction = sp.symbols(
    "coat_price trouser_price trouser_count pay_fraction", real=True
)
prices = {coat_price: 400, trouser_price: 300, trouser_count: 2, pay_fraction: sp.Rational(7, 10)}
inputs = [coat_price, trouser_price, trouser_count, pay_fraction]


def forward_and_backward_by_hand():
    """The graph node by node: forward values, then local derivatives chained backwards."""
    trousers_node, subtotal_node = sp.symbols("trousers subtotal", real=True)
    trousers = trouser_price * trouser_count
    subtotal = coat_price + trousers_node
    total = subtotal_node * pay_fraction

    values = dict(prices)
    values[trousers_node] = trousers.subs(values)
    values[subtotal_node] = subtotal.subs(values)
    print("forward pass")
    print(f"  trousers = {trousers} = {float(values[trousers_node]):g}")
    print(f"  subtotal = {subtotal} = {float(values[subtotal_node]):g}")
    print(f"  total    = {total} = {float(total.subs(values)):g}")

    # Local derivatives of each node with respect to its own inputs.
    d_total = dict(zip([subtotal_node, pay_fraction], sd.grad(total, [subtotal_node, pay_fraction])))
    d_subtotal = dict(zip([coat_price, trousers_node], sd.grad(subtotal, [coat_price, trousers_node])))
    d_trousers = dict(zip([trouser_price, trouser_count], sd.grad(trousers, [trouser_price, trouser_count])))

    def number(value):
        return f"{float(value):g}"

    print("\nbackward pass (chain rule: multiply the local derivatives along the path)")
    through_subtotal = d_total[subtotal_node].subs(values)
    through_trousers = (d_total[subtotal_node] * d_subtotal[trousers_node]).subs(values)
    chained = {
        coat_price: (d_total[subtotal_node] * d_subtotal[coat_price]).subs(values),
        trouser_price: through_trousers * d_trousers[trouser_price].subs(values),
        trouser_count: through_trousers * d_trousers[trouser_count].subs(values),
        pay_fraction: d_total[pay_fraction].subs(values),
    }
    print(f"  d total/d subtotal      = {d_total[subtotal_node]} = {number(through_subtotal)}")
    print(f"  d total/d pay_fraction  = {d_total[pay_fraction]} = {number(chained[pay_fraction])}")
    print(f"  d total/d coat_price    = d total/d subtotal * {d_subtotal[coat_price]}"
          f" = {number(chained[coat_price])}")
    print(f"  d total/d trousers      = d total/d subtotal * {d_subtotal[trousers_node]}"
          f" = {number(through_trousers)}")
    print(f"  d total/d trouser_price = d total/d trousers * {d_trousers[trouser_price]}"
          f" = {number(through_trousers)} * {number(d_trousers[trouser_price].subs(values))}"
          f" = {number(chained[trouser_price])}")
    print(f"  d total/d trouser_count = d total/d trousers * {d_trousers[trouser_count]}"
          f" = {number(through_trousers)} * {number(d_trousers[trouser_count].subs(values))}"
          f" = {number(chained[trouser_count])}")
    return chained


def main():
    chained = forward_and_backward_by_hand()

    total = (coat_price + trouser_price * trouser_count) * pay_fraction
    gradient = sd.grad(total, inputs)
    print(f"\nsd.grad of the whole formula  total = {total}")
    for symbol, formula in zip(inputs, gradient):
        print(f"  d total/d {symbol.name:<13} = {str(formula):<36} = {float(formula.subs(prices)):g}")
        assert formula.subs(prices) == chained[symbol]

    objective = sd.Objective(total, params=inputs, data=[])
    kernel = objective.compile()
    theta = np.array([float(prices[symbol]) for symbol in inputs])
    value, numeric = kernel(theta, np.empty((1, 0)))
    print("\ncompiled kernel at " + ", ".join(f"{s.name}={v:g}" for s, v in zip(inputs, theta)))
    print(f"  total    = {value:g}")
    print("  gradient = " + ", ".join(f"{symbol} {number:g}" for symbol, number in zip(inputs, numeric)))
    expected = [float(chained[symbol]) for symbol in inputs]
    assert np.isclose(value, 700.0) and np.allclose(numeric, expected), (value, numeric, expected)


if __name__ == "__main__":
    main()
