"""Everything that keeps mail until it is sent: the spool, the memory queue, the ledger."""
