"""`fieldproof simulate`: a compressed day of field work driven through the HTTP API, with labelled fraud."""
