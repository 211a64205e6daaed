"""egi-hub inside its Helm chart (helm/egi-hub): how the chart's values become the hub's config.

`config` loads ``hub.config`` as a site file, with the same checks and meaning as
``egi-hub up``; each other values section the hub acts on has a module of its own here
(`cull`: the idle culler; `singleuser`: the single-user defaults; `binder`: the Binder
service), given the section as the chart renders it into ``$EGI_HUB_VALUES_FILE``.
"""
