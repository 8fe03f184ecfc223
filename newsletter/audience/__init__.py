"""The audience: subscribers and their statuses, CSV files, and signed links."""
