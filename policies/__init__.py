"""The policy interface (signal, sizing, entry, exit), rule-based baselines, RLlib-backed policies,
the model registry and the observation features shared by training and trading."""
