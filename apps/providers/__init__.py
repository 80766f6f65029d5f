"""Layer 1: GPU marketplaces behind one interface, and SSH to their machines. No models.

`base` is the interface, `vast` (and later `runpod`, `gcp`) implement it,
`registry.get_provider(name)` hands out the configured one, `http` is the only way they reach
the network, `guard` (with `middleware`) keeps those calls out of DB transactions and HTTP
requests, and `ssh` is the control plane's SSH identity and the readiness handshake.
"""
