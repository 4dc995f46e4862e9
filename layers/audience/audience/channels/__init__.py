"""Channel connections: an org's accounts on each platform, their secrets and webhook URLs."""
