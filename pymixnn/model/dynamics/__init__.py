"""Dynamic structural models: event records (doses, resets, steady state) driving compartment
models solved exactly and ODE models solved numerically, batched over individuals.

- :mod:`~pymixnn.model.dynamics.system`: the interface a system implements, dosing parameters
- :mod:`~pymixnn.model.dynamics.linear`: matrix exponentials and closed-form steady states
- :mod:`~pymixnn.model.dynamics.compartments`: the named 1-, 2-, 3-compartment PK models
- :mod:`~pymixnn.model.dynamics.ode`: ODE systems (torchdiffeq), linear ODEs exactly
- :mod:`~pymixnn.model.dynamics.cycles`: steady state of nonlinear systems by dosing cycles
- :mod:`~pymixnn.model.dynamics.engine`: the event semantics and the loop over events
- :mod:`~pymixnn.model.dynamics.bound`: a model bound to its event table, ``f(psi, x)``
- :mod:`~pymixnn.model.dynamics.models`: ``ODEModel``, ``pk_model``, ``bind_events``
"""
