"""The short name users type in notebooks: ``from egi_hub.token import access_token``.

Notebook side only, like the code it re-exports from `egi_hub.singleuser.token` (see
there for how the token file is kept fresh). Hub code never imports this module.
"""

from __future__ import annotations

from egi_hub.singleuser.token import access_token, token_file

__all__ = ["access_token", "token_file"]
