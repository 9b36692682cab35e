"""What users look at: bounded formula displays, the computational graph, plots.

``bounded`` keeps ``gradient()``/``latex()``/``pretty()`` fast whatever the model's
size, ``compgraph`` builds the graph with forward values and adjoints and ``drawing``
draws it, ``names`` prints snake_case names as words, ``plotting`` makes matplotlib
figures, ``opcount`` compares our program's size with per-parameter ``sympy.diff``.
"""
