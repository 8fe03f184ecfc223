"""The web endpoints: subscribe, confirm, unsubscribe, archive."""
