"""Cloud providers from the domain's side: stop/teardown operations, the price and state poller, the spend ledger, pod import."""
