import numpy as np
import sympy as sp
import symdiff as sd

z, y = sp.symbols("z y")                                     # z: prediction or logit, y: target
squared = sd.losses.mse(z, y)
cross_entropy = sd.losses.logistic(z, y)                     # softplus(z) - y*z
textbook = -y * sp.log(sd.sigmoid(z)) - (1 - y) * sp.log(1 - sd.sigmoid(z))

print("MSE            ", squared, "  gradient", sd.grad(squared, [z])[0])
print("cross-entropy  ", cross_entropy, "  gradient", sd.grad(cross_entropy, [z])[0])
for zv, yv in [(-3.0, 0), (0.5, 1), (4.0, 1)]:
    point = {z: zv, y: yv}
    print(f"z={zv:5}, y={yv}: softplus form {float(cross_entropy.subs(point)):.6f}, "
          f"textbook form {float(textbook.subs(point)):.6f}")

w, x = sp.symbols("w x")
naive = sp.log(1 + sp.exp(w * x)) - y * w * x                # written naively on purpose
kernel = sd.Objective(naive, params=[w], data=[x, y]).compile()
print("\ncompiled log(1 + exp(w*x)) at w*x = 1000:", kernel(np.array([1.0]), {x: [1000.0], y: [0.0]}))
with np.errstate(over="ignore"):
    print("NumPy     log(1 + exp(1000))          :", np.log(1 + np.exp(1000.0)))
