"""The modules the hub process imports: none of them may pull in the notebook side."""

HUB_MODULES = [
    "egi_hub.authenticator.checkin",
    "egi_hub.authenticator.dev",
    "egi_hub.spawner.local",
    "egi_hub.spawner.kube",
    "egi_hub.stack",
    "egi_hub.cli",
]
