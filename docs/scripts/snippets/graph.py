import sympy as sp
import symdiff as sd

coat, trouser, count, pay = sp.symbols("coat_price trouser_price trouser_count pay_fraction")
total = (coat + count * trouser) * pay
prices = {coat: 400, trouser: 300, count: 2, pay: 0.7}

print(f"total = {total} = {float(total.subs(prices)):g}")
for symbol, derivative in zip([coat, trouser, count, pay], sd.grad(total, [coat, trouser, count, pay])):
    print(f"d total/d {symbol} = {derivative} = {float(derivative.subs(prices)):g}")
