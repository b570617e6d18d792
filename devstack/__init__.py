"""Local stand-ins for Azure used by `make run` and the tests; never imported by the product.

`python -m devstack up` starts, on loopback, a Key Vault secrets emulator, an Entra ID authority,
an App Service managed identity endpoint and a Partner Center API stub, all sharing one emulated
clock, one fault injector and one token signer (see `context.py`).
"""
