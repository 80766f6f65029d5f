"""Layer 5: the usage ledger (append-only) and the savings computed from it.

It only listens (receivers.py): a state entered, a race loser billed, a workspace's size in
storage. Nothing below it knows it exists.
"""
