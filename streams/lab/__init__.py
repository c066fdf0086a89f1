"""Measurement: the soak, the service and core benchmarks, and their Faust baselines."""
