import numpy as np
import pandas as pd
import sympy as sp
import dask.dataframe as dd
from dask.distributed import Client, LocalCluster

import symdiff as sd
from symdiff import distributed

a, b, c, x, y = sp.symbols("a b c x y")
model = a * sp.exp(-b * x) + c

if __name__ == "__main__":  # LocalCluster starts worker processes
    rng = np.random.default_rng(0)
    X = rng.uniform(0, 4, 200_000)
    table = pd.DataFrame({"x": X, "y": 2.5 * np.exp(-0.8 * X) + 0.3 + rng.normal(0, 0.05, X.size)})
    ddf = dd.from_pandas(table, npartitions=4)  # columns named like the data symbols

    with LocalCluster(n_workers=2, threads_per_worker=1) as cluster, Client(cluster):
        res = sd.least_squares(model, ddf, target=y, p0={a: 1, b: 1, c: 0})
        for name, value in res.params.by_name().items():
            print(f"{name} = {value:.4f} ± {res.stderr.by_name()[name]:.4f}")

        obj = sd.Objective((model - y) ** 2, [a, b, c], [x, y])
        lbfgs = sd.minimize(obj, ddf, x0={a: 1, b: 1, c: 0})
        print("L-BFGS:", np.round(lbfgs.x, 6), lbfgs.nit, "iterations")
        gd = sd.fit(obj, ddf, optimizer=sd.optim.SGD(lr=0.1), epochs=20, init="zeros", progress=False)
        print("full-batch GD, 20 epochs: loss", f"{gd.history.train_loss[-1]:.4g}")

        bound = distributed.bind(obj, ddf)  # what the solvers call
        bound(lbfgs.x)
        print(bound, bound.stats)
        local = obj.compile().bind({"x": table["x"].to_numpy(), "y": table["y"].to_numpy()})
        print("same as on the gathered data:", np.allclose(bound(lbfgs.x)[1], local(lbfgs.x)[1]))
