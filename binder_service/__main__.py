"""Run the Binder service: ``python -m egi_hub.binder_service`` (the hub starts it).

JupyterHub gives a managed service its address and token in the environment
(``JUPYTERHUB_SERVICE_URL``, ``JUPYTERHUB_SERVICE_PREFIX``, ``JUPYTERHUB_API_TOKEN``,
``JUPYTERHUB_API_URL``); the site's settings for the service (``BinderService``,
``Resolver``, the builders) come from the JSON config file named by
``EGI_BINDER_CONFIG``, which the local stack writes from the site file.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path
from urllib.parse import urlparse

from traitlets import TraitError
from traitlets.config import Config
from traitlets.config.loader import JSONFileConfigLoader

from .app import make_app
from .guest_reaper import launching_users, reap_forever
from .guests import BinderGuests
from .service import BinderConfigError, BinderService
from .token_api import MAX_REQUEST_BODY


def load_config() -> Config:
    path = os.environ.get("EGI_BINDER_CONFIG")
    if not path:
        return Config()
    file = Path(path)
    return JSONFileConfigLoader(file.name, path=str(file.parent)).load_config()


async def serve() -> None:
    logging.basicConfig(level=logging.INFO, format="[binder %(levelname)s %(asctime)s] %(message)s")
    url = urlparse(os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:8890"))
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/binder/")
    hub_prefix = os.environ.get("JUPYTERHUB_BASE_URL", "/").rstrip("/") + "/hub/"
    config = load_config()
    binder = BinderService(config=config)
    guests = BinderGuests(config=config)
    app = make_app(binder, prefix=prefix, hub_prefix=hub_prefix, guests=guests.enabled)
    # No request of the service has a large body: refuse one before tornado buffers it.
    app.listen(
        url.port or 8890, url.hostname or "127.0.0.1", xheaders=True,
        max_body_size=MAX_REQUEST_BODY,
    )  # fmt: skip
    logging.getLogger().info("Binder service at %s%s (builder: %s)", url.geturl(), prefix,
                             binder.builder)  # fmt: skip
    background = []  # kept referenced: these run as long as the service
    if guests.enabled:
        background.append(asyncio.ensure_future(
            reap_forever(
                binder.launcher.service_client,
                grace=guests.grace,
                max_age=guests.max_age,
                every=guests.reap_interval,
                busy=lambda: launching_users(binder.jobs.running),
            )
        ))  # fmt: skip
    await asyncio.Event().wait()


def main() -> None:
    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        sys.exit(0)
    except (BinderConfigError, TraitError) as e:  # bad config: one line naming the key
        print(f"egi-hub binder: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
