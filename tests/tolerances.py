"""Tolerances for comparing two *different* compiled programs in float32.

XLA may fuse, reorder and vectorise the same arithmetic differently in two programs (a loop run op
by op against a scan, a vmapped batch against one trial, jit against eager), and how it does so
depends on the CPU's vector units: bit-equality of two programs that held on one x86-64 machine
failed on another (an AMD EPYC: 8.6e-7 apart after 4 rounds of CMA-ES). So tests compare two
programs with these tolerances, and keep exact equality only for the same program run twice.
"""

# One pass of float32 arithmetic: a few ulps (1.2e-7 each) per operation.
F32 = {"rtol": 2e-5, "atol": 1e-6}
# Iterated float32 arithmetic (rounds of a strategy, steps of training), where rounding compounds.
F32_ITERATED = {"rtol": 2e-4, "atol": 1e-5}
