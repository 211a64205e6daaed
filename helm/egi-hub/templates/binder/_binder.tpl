{{/* The Binder service's names, URLs and settings (templates/binder/). */}}

{{/* The hub's base URL (hub.config.JupyterHub.base_url), with a "/" at each end. */}}
{{- define "egi-hub.binder.baseUrl" -}}
{{- $base := trimAll "/" (dig "JupyterHub" "base_url" "/" (.Values.hub.config | default dict) | toString) -}}
{{- if $base }}/{{ $base }}/{{ else }}/{{ end -}}
{{- end -}}

{{/* Where the hub routes the service: <base>services/binder/. */}}
{{- define "egi-hub.binder.prefix" -}}
{{ include "egi-hub.binder.baseUrl" . }}services/binder/
{{- end -}}

{{/* The service's in-cluster URL (the hub's proxy route to it). */}}
{{- define "egi-hub.binder.url" -}}
http://{{ include "egi-hub.binder" . }}:{{ .Values.binder.service.port }}
{{- end -}}

{{/* The service's public URL on the hub's host (empty without the hub's Ingress). */}}
{{- define "egi-hub.binder.publicUrl" -}}
{{- if and .Values.ingress.enabled .Values.ingress.hosts -}}
{{- $scheme := ternary "https" "http" (gt (len .Values.ingress.tls) 0) -}}
{{- printf "%s://%s%s" $scheme (first .Values.ingress.hosts) (include "egi-hub.binder.prefix" .) -}}
{{- end -}}
{{- end -}}

{{/* The image prefix of the builds: binder.build.registry/imagePrefix. */}}
{{- define "egi-hub.binder.imagePrefix" -}}
{{- $b := .Values.binder.build -}}
{{- if $b.registry }}{{ $b.registry }}/{{ end }}{{ $b.imagePrefix -}}
{{- end -}}

{{/*
The service's config file (EGI_BINDER_CONFIG): binder.config, the Binder sections of the
site file, and the keys the chart sets (the builder and its settings from binder.build,
the data folder on the pod's volume, the namespace of the build pods). JSON: a YAML
subset that keeps numbers exact. No secret of the chart's: those come by environment.
*/}}
{{- define "egi-hub.binder.config" -}}
{{- $b := .Values.binder -}}
{{- $c := deepCopy ($b.config | default dict) -}}
{{- $svc := get $c "BinderService" | default dict -}}
{{- $_ := set $svc "builder" "kubernetes" -}}
{{- $_ := set $svc "data_dir" "/srv/binder" -}}
{{- $_ := set $svc "build_concurrency" $b.build.concurrency -}}
{{- $_ := set $c "BinderService" $svc -}}
{{- $kb := get $c "KubernetesBuilder" | default dict -}}
{{- $_ := set $kb "namespace" .Release.Namespace -}}
{{- $_ := set $kb "image_prefix" (include "egi-hub.binder.imagePrefix" .) -}}
{{- with $b.build.pushSecret }}{{ $_ := set $kb "push_secret" . }}{{ end -}}
{{- with $b.build.image }}{{ $_ := set $kb "image" . }}{{ end -}}
{{- $_ := set $c "KubernetesBuilder" $kb -}}
{{- toJson $c -}}
{{- end -}}
