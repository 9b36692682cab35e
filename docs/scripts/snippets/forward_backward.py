import numpy as np
import sympy as sp
import symdiff as sd

w, b, x, y = sp.symbols("w b x y")
objective = sd.Objective((w * x + b - y) ** 2, params=[w, b], data=[x, y])
print(objective.program())

rng = np.random.default_rng(1)
xs = rng.standard_normal(100)
ys = 3 * xs + 2 + 0.5 * rng.standard_normal(100)
kernel = objective.compile()

theta = np.array([1.0, 0.0])
loss, gradient = kernel(theta, {x: xs, y: ys})
residual = theta[0] * xs + theta[1] - ys                   # the same numbers, by hand in NumPy
print("\nkernel:", loss, gradient)
print("numpy: ", np.mean(residual**2), [np.mean(2 * residual * xs), np.mean(2 * residual)])

for step in range(200):                                      # gradient descent
    loss, gradient = kernel(theta, {x: xs, y: ys})
    theta -= 0.1 * gradient
print(f"\nafter 200 steps: w = {theta[0]:.4f}, b = {theta[1]:.4f}, loss = {loss:.4f}")
