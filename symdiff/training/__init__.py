"""Training and model selection: mini-batch first-order training and what is built on it.

``driver`` is ``sd.fit`` (the optimizers of :mod:`symdiff.optim` and schedules of
:mod:`symdiff.schedules` driven over mini-batches), ``tuning`` is ``sd.tune`` and
``sd.lr_find``, ``multiclass`` the label handling of the scikit-learn estimators in
:mod:`symdiff.estimators`.
"""
