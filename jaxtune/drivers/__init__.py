"""The drivers: short impure loops over a :class:`~jaxtune.study.Study`, side by side.

* :mod:`~jaxtune.drivers.rounds`: rounds of ask -> execute -> tell (every strategy);
* :mod:`~jaxtune.drivers.population`: lanes trained in segments, a scheduler deciding between
  them (PBT, ASHA, median stopping);
* :mod:`~jaxtune.drivers.halving`: successive halving and Hyperband whose survivors continue
  from their state.

Only :func:`jaxtune.tune` (which checks the arguments and picks one) imports them. Each takes
the checked arguments (:class:`~jaxtune.drivers.args.Arguments`), uses the study layer for
everything stored, and returns the study's :class:`~jaxtune.Result`.
"""
