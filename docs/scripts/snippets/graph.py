import sympy as sp
import symdiff as sd

coat, trouser, count, pay = sp.symbols("coat_price trouser_price trouser_count pay_fraction")
total = (coat + trouser * count) * pay
g = sd.computational_graph(total, wrt=[coat, trouser, count, pay],
                           at={coat: 400, trouser: 300, count: 2, pay: 0.7}, output_name="total")
print(g)                      # one row per node: forward value and adjoint d total/d node
g.dot()                       # the same graph as Graphviz DOT source
# g.render("shopping_graph.svg") draws the picture below; in Jupyter, `g` shows it
