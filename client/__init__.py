"""bcvlm_client: a hospital site — SuperNode launch, ClientApp, DP training, privacy ledger, egress guard."""
