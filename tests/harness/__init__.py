"""bcvlm_testing: test harnesses (loopback federation, in-process grid, synthetic test sites), for tests and benchmarks."""
