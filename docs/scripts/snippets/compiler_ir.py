import sympy as sp
import symdiff as sd
from symdiff import mlp
from symdiff.display.opcount import naive_ops, program_ops

a, b, c, d, e, x, y = sp.symbols("a b c d e x y")
prediction = a * sp.exp(-b * x) + c * sp.sin(d * x + e)
objective = sd.Objective((prediction - y) ** 2, params=[a, b, c, d, e], data=[x, y])
print(objective.program())

network, weights = mlp(sd.vector("u", 2), (8, 8))            # 2-8-8-1 tanh network, 105 parameters
print("\nmodel                      params  symdiff ops  sympy.diff + cse ops")
for name, loss, params in [("curve fit", (prediction - y) ** 2, [a, b, c, d, e]),
                           ("MLP 2-8-8-1 tanh", (network - y) ** 2, list(weights))]:
    ours = program_ops(sd.Objective(loss, params).program())
    naive, _ = naive_ops(loss, params)
    print(f"{name:26} {len(params):6}  {ours:11}  {naive:20}")
