import sympy as sp
import symdiff as sd

u, x = sp.symbols("u x")
outer, inner = sp.exp(u), x**2 + 1          # y = f(u) with u = g(x)
dy_du, = sd.grad(outer, [u])
du_dx, = sd.grad(inner, [x])
print("dy/du * du/dx =", (dy_du * du_dx).subs(u, inner))
print("d/dx f(g(x))  =", sd.grad(outer.subs(u, inner), [x])[0])
