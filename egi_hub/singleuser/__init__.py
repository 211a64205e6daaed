"""The notebook side of egi-hub: code that runs inside users' Jupyter servers.

Today the token keeper (`egi_hub.singleuser.token`) and the defaults egi-hub gives
other server extensions (`egi_hub.singleuser.defaults`); storage credentials, fsspec
filesystems and the file-browser extension will join them. Hub code (authenticator,
spawners, local stack, CLI) never imports this package: what both sides must agree on
lives in `egi_hub.singleuser_config`. This package depends on egi-hub's core only.
"""
