"""bcvlm_simulation: virtual hospitals on Flower's simulation engine, baselines and the HTML report."""
