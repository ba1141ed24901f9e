"""The synthetic dataset (virtual scanner + processing) and the reference code's layout, exported and imported."""
