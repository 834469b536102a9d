"""bcvlm_server: the coordinating center — SuperLink launch, ServerApp, strategies, certificates, run directories."""
