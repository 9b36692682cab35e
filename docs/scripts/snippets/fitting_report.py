import numpy as np
import symdiff as sd

S = np.array([0.02, 0.02, 0.06, 0.06, 0.11, 0.11, 0.22, 0.22, 0.56, 0.56, 1.10, 1.10])
v = np.array([76, 47, 97, 107, 123, 139, 159, 152, 191, 201, 207, 200.0])

res = sd.least_squares("Vmax*S/(Km + S)", {"S": S, "v": v}, "v", {"Vmax": 200, "Km": 0.1})
print(res)                                          # the fit report
print()
print("Vmax =", res.params["Vmax"], "+/-", res.stderr["Vmax"])
print("covariance:\n", res.covariance)
print("prediction at S = 0.3, 2:", res.predict({"S": [0.3, 2.0]}))
