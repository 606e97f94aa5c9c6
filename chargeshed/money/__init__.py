"""Double-entry ledger in integer fen, wallets, and money formatting."""
