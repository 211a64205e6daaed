"""Storage mounts for notebooks: DataHub (Onedata) spaces, S3 buckets and NFS exports.

Mount specs, per-user credentials and their Kubernetes and local renderings live here.
"""
