# The hub's config in the egi-hub chart: hub.config (the site file, rendered by the chart
# into $EGI_HUB_SITE_FILE) checked and turned into traitlets exactly as `egi-hub up` does;
# a bad key stops the hub here, named, before it starts. See egi_hub/helm/config.py.
from egi_hub.helm.config import load

c = get_config()  # noqa: F821 (JupyterHub's config loader provides it)
c.merge(load())
