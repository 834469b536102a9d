"""Local training and evaluation loops (no Flower): used by federated sites, simulation and baselines."""
