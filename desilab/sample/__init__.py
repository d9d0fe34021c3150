"""The sample sky: a realistic mock DR1 universe with known truth, written in the real formats."""
