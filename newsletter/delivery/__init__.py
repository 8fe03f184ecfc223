"""Delivery: a send run, the ledger, messages, transports and the locks between senders."""
