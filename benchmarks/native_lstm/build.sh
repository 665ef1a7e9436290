#!/bin/bash
# Builds liblstm_ffi.so beside this script: g++ with OpenMP, JAX's FFI headers; no other library.
cd "$(dirname "$0")"
set -e
V=${VIRTUAL_ENV:?activate the venv}
INC=$($V/bin/python -c "import jax; print(jax.ffi.include_dir())")
g++ -O3 -march=native -ffast-math -fopenmp -fPIC -shared -std=c++17 -I$INC -I$V/include lstm_ffi.cc -o liblstm_ffi.so
