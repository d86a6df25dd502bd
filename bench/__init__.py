"""Load generator and hot-path benchmarks."""
