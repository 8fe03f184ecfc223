"""Hearing back after a send: bounces, complaints, mailto unsubscribes and auto-replies,
from the bounce mailbox (Maildir, mbox, IMAP, a pipe) and from providers' webhooks.

parse.py reads a returned message into reports, classify.py judges a failure hard or soft,
identify.py finds the proof that a report is about our mail, policy.py changes subscribers
and the ledger (once per report), mailboxes.py reads and files the mail, process.py runs it
all, and webhooks/ has one module per provider.
"""
