#!/usr/bin/env bash
# The main job: the paper's MNIST protocol (Table I): 6 methods x 10 seeds x
# 2000 iterations, evaluated every 200. Extra arguments are passed on, e.g.
#   bash scripts/reproduce_mnist.sh --config.data_source=local --config.data_dir=../shared/data/mnist
#   bash scripts/reproduce_mnist.sh --config.num_seeds=2 --config.num_steps=600
# WORKDIR (default workdirs/mnist_lenet) can be set in the environment.
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
exec python -m experiments.run mnist_lenet \
  --workdir "${WORKDIR:-workdirs/mnist_lenet}" "$@"
