"""GPU marketplaces behind one interface.

`base` is the interface, `vast` (and later `runpod`) implement it, `registry.get_provider(name)`
hands out the configured one, `http` is the only way they reach the network and `guard` keeps
those calls out of DB transactions and HTTP requests.
"""
