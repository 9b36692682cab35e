import sympy as sp
import symdiff as sd

w, b, x, y = sp.symbols("w b x y")
objective = sd.Objective((w * x + b - y) ** 2, params=[w, b], data=[x, y])
kernel = objective.compile(cache=False)
print(kernel)
print("compile stages (seconds):", {stage: round(t, 4) for stage, t in kernel.compile_times.items()})
