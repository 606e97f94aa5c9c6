"""包月 monthly passes: plans per site, bought from the wallet, used for charges within limits, refunded
pro rata, and recognised as revenue per day of validity."""
