import sympy as sp
import symdiff as sd

M = sp.MatrixSymbol
x, y = M("x", 64, 1), M("y", 10, 1)                    # one sample: pixels, one-hot label
W1, b1, W2, b2 = M("W1", 32, 64), M("b1", 32, 1), M("W2", 10, 32), M("b2", 10, 1)
z = W2 * (W1 * x + b1).applyfunc(sp.tanh) + b2         # h = tanh(W1 x + b1), z = W2 h + b2
objective = sd.Objective(sd.losses.softmax_cross_entropy(z, y),
                         params=[W1, b1, W2, b2], data=[x, y])

for name, value in objective.layers.items():           # the forward layers, named
    print(f"{name} = {value}")
for p, g in zip(objective.params, objective.gradient()):
    print(f"dL/d{p.name} =", g)
print()
print(objective.program())
