import time

import numpy as np
import scipy.optimize

import symdiff as sd

S = np.array([0.02, 0.02, 0.06, 0.06, 0.11, 0.11, 0.22, 0.22, 0.56, 0.56, 1.10, 1.10])
v = np.array([76, 47, 97, 107, 123, 139, 159, 152, 191, 201, 207, 200.0])


def michaelis_menten(S, Vmax, Km):            # plain NumPy: sd.curve_fit traces it once
    return Vmax * S / (Km + S)


rows = {"sd.curve_fit": sd.curve_fit(michaelis_menten, S, v, p0=[200, 0.1]),
        "scipy.optimize.curve_fit": scipy.optimize.curve_fit(michaelis_menten, S, v, p0=[200, 0.1])}
try:
    import lmfit
except ImportError:
    print("(lmfit is not installed where these docs were built: no lmfit column)\n")
else:
    out = lmfit.Model(michaelis_menten).fit(v, S=S, Vmax=200, Km=0.1)
    rows["lmfit"] = (np.array([out.params[n].value for n in ("Vmax", "Km")]), out.covar)

print(f"{'':26}{'Vmax':>12}{'± stderr':>10}{'Km':>12}{'± stderr':>10}")
for name, (popt, pcov) in rows.items():
    err = np.sqrt(np.diag(pcov))
    print(f"{name:26}{popt[0]:12.6f}{err[0]:10.4f}{popt[1]:12.7f}{err[1]:10.6f}")
print(f"{'R nls (as documented)':26}{'212.7':>12}{'6.947':>10}{'0.06412':>12}{'0.008281':>10}")

# the untraceable: a Python `if` on a parameter's value is refused, never guessed
def piecewise(S, Vmax, Km):
    if Km > 0.1:
        return Vmax * S / (Km + S)
    return Vmax * S


try:
    sd.curve_fit(piecewise, S, v, p0=[200, 0.1])
except sd.UnsupportedError as error:
    print("\n" + type(error).__name__ + ":", error)
