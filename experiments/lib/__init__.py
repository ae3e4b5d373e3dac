"""The framework beneath the experiments' entry points: methods, solvers,
models, data, training, workdirs and records. It imports only itself, the
configs and layerlr_optax, never an entry point or the analysis layer."""
