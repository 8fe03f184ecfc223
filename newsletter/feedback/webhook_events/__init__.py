"""Providers that report bounces and complaints by webhook instead of mail: one module per
provider (ses.py, mailgun.py), each verifying the provider's signature before reading a
word, and turning the event into the same reports returned mail gives (policy.py)."""
