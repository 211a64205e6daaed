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
The namespace of the build pods (binder.build.namespace, else <release namespace>-<fullname>-build:
one per release, so two releases in one namespace never share build pods, their tokens or their
NetworkPolicy). Never the release's own, which holds the hub's Secrets, a VO's, `default` or a
kube-* one (checked in templates/binder/build.yaml).
*/}}
{{- define "egi-hub.binder.buildNamespace" -}}
{{- .Values.binder.build.namespace | default (printf "%s-%s-build" .Release.Namespace (include "egi-hub.fullname" .)) -}}
{{- end -}}

{{/* The chart's docker-in-docker DaemonSet (binder.dind). */}}
{{- define "egi-hub.binder.dind" -}}{{ include "egi-hub.binder" . }}-dind{{- end -}}

{{/*
The node's folder holding the dind socket: one per release, <namespace>_<fullname> (two
releases on a node never share an engine: neither name can hold a "_", so release b-c in
namespace a and release c in namespace a-b get folders of their own).
*/}}
{{- define "egi-hub.binder.dindSocketDir" -}}
{{- printf "%s/%s_%s" (.Values.binder.dind.hostSocketDir | trimSuffix "/") .Release.Namespace (include "egi-hub.fullname" .) -}}
{{- end -}}

{{/*
The engine socket (on the node) the build pods mount (KubernetesBuilder.docker_socket):
the chart's dind's, or the site's own engine's (binder.build.dockerSocket).
*/}}
{{- define "egi-hub.binder.dockerSocket" -}}
{{- if .Values.binder.dind.enabled -}}
{{- printf "%s/docker.sock" (include "egi-hub.binder.dindSocketDir" .) -}}
{{- else -}}
{{- .Values.binder.build.dockerSocket -}}
{{- end -}}
{{- end -}}

{{/*
binder.extraEnv's plain values (strings, numbers): they go into the Binder Secret
(key env.<NAME>) and reach the container by secretKeyRef, never as a value in the
Deployment (readable with the `view` role). As JSON: {NAME: "value"}.
*/}}
{{- define "egi-hub.binder.extraEnvSecret" -}}
{{- $out := dict -}}
{{- range $name, $value := .Values.binder.extraEnv -}}
{{- if not (kindIs "map" $value) -}}
{{- $_ := set $out $name ($value | toString) -}}
{{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/*
The hub's view of BinderGuests (values.json): binder.config.BinderGuests, with
trusted_proxies (how many proxies append to X-Forwarded-For) set for the chart's hops
unless given: the hub's proxy (CHP appends its peer, unless --no-x-forward is in
proxy.chp.extraCommandLineFlags), plus the Ingress controller with the hub's Ingress.
*/}}
{{- define "egi-hub.binder.guests" -}}
{{- $g := deepCopy (dig "BinderGuests" (dict) (.Values.binder.config | default dict)) -}}
{{- if not (hasKey $g "trusted_proxies") -}}
{{- $chp := ternary 0 1 (has "--no-x-forward" (.Values.proxy.chp.extraCommandLineFlags | default list)) -}}
{{- $ingress := ternary 1 0 (and .Values.ingress.enabled (gt (len .Values.ingress.hosts) 0)) -}}
{{- $_ := set $g "trusted_proxies" (add $chp $ingress) -}}
{{- end -}}
{{- toJson $g -}}
{{- end -}}

{{/*
The service's config file (EGI_BINDER_CONFIG): binder.config, the Binder sections of the
site file, and the keys the chart sets (the builder and its settings from binder.build,
the data folder on the pod's volume, the namespace of the build pods, the engine's
socket). JSON: a YAML
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
{{- $_ := set $kb "namespace" (include "egi-hub.binder.buildNamespace" .) -}}
{{- $_ := set $kb "docker_socket" (include "egi-hub.binder.dockerSocket" .) -}}
{{- $_ := set $kb "image_prefix" (include "egi-hub.binder.imagePrefix" .) -}}
{{- with $b.build.pushSecret }}{{ $_ := set $kb "push_secret" . }}{{ end -}}
{{- with $b.build.image }}{{ $_ := set $kb "image" . }}{{ end -}}
{{- if $b.dind.enabled -}}
{{- /* the build pods go where the chart's dind runs, unless placed otherwise */ -}}
{{- if and $b.dind.nodeSelector (not (hasKey $kb "node_selector")) }}{{ $_ := set $kb "node_selector" $b.dind.nodeSelector }}{{ end -}}
{{- if and $b.dind.tolerations (not (hasKey $kb "tolerations")) }}{{ $_ := set $kb "tolerations" $b.dind.tolerations }}{{ end -}}
{{- end -}}
{{- $_ := set $c "KubernetesBuilder" $kb -}}
{{- toJson $c -}}
{{- end -}}
