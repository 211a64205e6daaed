{{/* The single-user side of the chart: per-VO namespaces (egi_hub/helm/singleuser.py). */}}

{{/*
The storage mounts the hub uses: hub.config's StorageMounts.mounts if it sets them (it
wins, as for every trait), else singleuser.storageMounts.mounts.
*/}}
{{- define "egi-hub.singleuserMounts" -}}
{{- $site := dig "StorageMounts" "mounts" nil (.Values.hub.config | default (dict)) -}}
{{- $own := dig "mounts" nil (.Values.singleuser.storageMounts | default (dict)) -}}
{{- toJson (dict "mounts" (default $own $site | default (list))) -}}
{{- end -}}

{{/*
The Pod Security level a per-VO namespace enforces (Pod Security Admission). `restricted`
fits the notebook container as EGIKubeSpawner makes it (not root, no privilege
escalation, no capabilities, RuntimeDefault seccomp) and its volumes (PVC, emptyDir,
Secret). Storage mounts change that, for every namespace, since a mount goes to every
server whose user's VOs it names, whatever VO the server is charged to:
- a DataHub mount adds the oneclient sidecar, privileged: its FUSE mount needs
  /dev/fuse and CAP_SYS_ADMIN, and reaches the notebook container only through
  Bidirectional mount propagation, which Kubernetes allows in privileged containers
  only. `baseline` already refuses a privileged container: the level is `privileged`;
- an NFS mount is an `nfs` volume, which `restricted` does not list (it allows
  configMap, csi, downwardAPI, emptyDir, ephemeral, persistentVolumeClaim, projected
  and secret volumes) and `baseline` allows: the level is `baseline`.
Either way the namespace also audits and warns at `restricted`, so what goes beyond it
shows in the API server's audit log.
*/}}
{{- define "egi-hub.podSecurityLevel" -}}
{{- $kinds := list -}}
{{- range (include "egi-hub.singleuserMounts" . | fromJson).mounts -}}
{{- if kindIs "map" . }}{{ $kinds = append $kinds (toString .kind) }}{{ end -}}
{{- end -}}
{{- if has "datahub" $kinds -}}privileged
{{- else if has "nfs" $kinds -}}baseline
{{- else -}}restricted
{{- end -}}
{{- end -}}

{{/* The per-VO namespaces to render: none unless singleuser.voNamespaces.enabled. */}}
{{- define "egi-hub.voNamespaces" -}}
{{- $vn := .Values.singleuser.voNamespaces | default (dict) -}}
{{- $out := dict -}}
{{- if $vn.enabled -}}
{{- $seen := dict -}}
{{- range $vo, $ns := ($vn.namespaces | default (dict)) -}}
{{- if eq $ns.name $.Release.Namespace -}}
{{- fail (printf "singleuser.voNamespaces.namespaces.%s.name: %q is the release's own namespace (its servers need no namespace of their own: leave the VO out)" $vo $ns.name) -}}
{{- end -}}
{{- if hasKey $seen $ns.name -}}
{{- fail (printf "singleuser.voNamespaces.namespaces: %s and %s share the namespace %q (each VO needs its own)" (get $seen $ns.name) $vo $ns.name) -}}
{{- end -}}
{{- $_ := set $seen $ns.name $vo -}}
{{- $_ := set $out $vo $ns -}}
{{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}
