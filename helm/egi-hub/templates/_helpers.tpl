{{/* Names, labels and shared fragments of the egi-hub chart. */}}

{{- define "egi-hub.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The prefix of every resource name: release-chart, or the override. */}}
{{- define "egi-hub.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "egi-hub.hub" -}}{{ include "egi-hub.fullname" . }}-hub{{- end -}}
{{- define "egi-hub.hubSecret" -}}{{ include "egi-hub.fullname" . }}-hub{{- end -}}
{{- define "egi-hub.hubConfig" -}}{{ include "egi-hub.fullname" . }}-hub-config{{- end -}}
{{- define "egi-hub.proxy" -}}{{ include "egi-hub.fullname" . }}-proxy{{- end -}}
{{- define "egi-hub.proxyApi" -}}{{ include "egi-hub.fullname" . }}-proxy-api{{- end -}}
{{- define "egi-hub.proxyPublic" -}}{{ include "egi-hub.fullname" . }}-proxy-public{{- end -}}
{{- define "egi-hub.binder" -}}{{ include "egi-hub.fullname" . }}-binder{{- end -}}

{{- define "egi-hub.selectorLabels" -}}
app.kubernetes.io/name: {{ include "egi-hub.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Labels of a resource: call with (dict "root" $ "component" "hub"). */}}
{{- define "egi-hub.labels" -}}
{{ include "egi-hub.selectorLabels" . }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: egi-hub
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "egi-hub.hubImage" -}}
{{- $img := .Values.hub.image -}}
{{- printf "%s:%s" $img.name (default .Chart.AppVersion $img.tag) -}}
{{- end -}}

{{/* The pods' imagePullSecrets: each item of .Values.imagePullSecrets a name or, as in
z2jh, {name: x} (egi_hub/helm/singleuser.py reads both forms the same way). */}}
{{- define "egi-hub.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ if kindIs "map" . }}{{ .name | quote }}{{ else }}{{ . | quote }}{{ end }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
hub.extraEnv as a list of EnvVars, in JSON ({"items": [...]}): the map form (name ->
a string or {valueFrom}) and z2jh's list form alike; each value a string.
*/}}
{{- define "egi-hub.hubExtraEnv" -}}
{{- $items := list -}}
{{- $env := .Values.hub.extraEnv | default dict -}}
{{- if kindIs "map" $env -}}
{{- range $name, $value := $env -}}
{{- if kindIs "map" $value -}}
{{- $items = append $items (merge (dict "name" $name) $value) -}}
{{- else -}}
{{- $items = append $items (dict "name" $name "value" (toString $value)) -}}
{{- end -}}
{{- end -}}
{{- else -}}
{{- range $env -}}
{{- if hasKey . "value" -}}
{{- $items = append $items (dict "name" .name "value" (toString .value)) -}}
{{- else -}}
{{- $items = append $items . -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- dict "items" $items | toJson -}}
{{- end -}}

{{/*
Refuses an extraEnv name the chart sets itself in the hub's or the Binder service's
container: the later entry wins, so it would replace what the chart's checks rely on
(POD_NAMESPACE is the servers' namespace; EGI_HUB_*, EGI_BINDER_CONFIG and JUPYTERHUB_*
name the config, database and tokens; the secrets come from the chart's Secrets). The
site's own EGI_BINDER_GITHUB_TOKEN/EGI_BINDER_GITLAB_TOKEN stay allowed. The names are
every one the two containers' `env` sets (tests/integration/test_helm_chart_env.py
keeps the list whole). Call with (dict "where" "hub.extraEnv" "env" <map, or a list of
{name: ...}>).
*/}}
{{- define "egi-hub.refuseChartEnv" -}}
{{- $exact := list "POD_NAMESPACE" "HOME" "JPY_COOKIE_SECRET" "PGPASSWORD" "MYSQL_PWD" "EGI_CHECKIN_CLIENT_SECRET" "EGI_BINDER_CONFIG" "EGI_BINDER_API_TOKEN" "EGI_BINDER_TICKET_SECRET" "EGI_BINDER_FETCH_JOB" -}}
{{- $prefixes := list "EGI_HUB_" "JUPYTERHUB_" "CONFIGPROXY_" -}}
{{- $names := list -}}
{{- if kindIs "map" .env -}}
{{- $names = keys .env | sortAlpha -}}
{{- else -}}
{{- range .env }}{{ $names = append $names (toString (get . "name")) }}{{ end -}}
{{- end -}}
{{- range $names -}}
{{- $name := toString . -}}
{{- $owned := has $name $exact -}}
{{- range $prefixes }}{{ if hasPrefix . $name }}{{ $owned = true }}{{ end }}{{ end -}}
{{- if $owned -}}
{{- fail (printf "%s.%s: the chart sets this variable itself (a second entry would replace the chart's and get past its checks): use the values key for it (EGI_HUB_*, JUPYTERHUB_*, CONFIGPROXY_*, POD_NAMESPACE, HOME, EGI_BINDER_CONFIG and the chart's secrets' variables are the chart's)" $.where $name) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
The restart checksum of a Deployment whose Secret holds `given` (the secret values given
in values, never looked-up or generated ones, which would change at every `helm template`),
keyed with the hub's crypt key so that the annotation lets no one test a guess.
Call with (dict "root" $ "given" (list ...)).
*/}}
{{- define "egi-hub.secretChecksum" -}}
{{- $key := include "egi-hub.keptSecret" (dict "root" .root "key" "crypt-key" "given" .root.Values.hub.cryptKey "generate" true) -}}
{{- printf "%s\n%s" $key (toJson .given) | sha256sum -}}
{{- end -}}

{{/*
The rules of the hub's Role, in the release's namespace (templates/hub/rbac.yaml) and in
each per-VO namespace (templates/singleuser/rbac.yaml): the same rights in both.
- KubeSpawner (egi-kube): pods (watched for their state), their events (spawn progress),
  users' PVCs, and the Services/Secrets it makes for internal_ssl;
- storage mounts (storage_mounts/kube.py): each server's `<pod>.egi-storage` Secret,
  made before the pod, patched as DataHub tokens renew, deleted at stop.
*/}}
{{- define "egi-hub.hubRoleRules" -}}
rules:
  - apiGroups: [""]
    resources: [pods]
    verbs: [get, list, watch, create, delete]
  - apiGroups: [""]
    resources: [events]
    verbs: [get, list, watch]
  - apiGroups: [""]
    resources: [persistentvolumeclaims]
    verbs: [get, create, delete]
  - apiGroups: [""]
    resources: [services]
    verbs: [get, create, delete]
  - apiGroups: [""]
    resources: [secrets]
    verbs: [get, create, patch, delete]
{{- end -}}

{{/* The hub's internal URL (the proxy's default target, the hub API for the test). */}}
{{- define "egi-hub.hubUrl" -}}
http://{{ include "egi-hub.hub" . }}:{{ .Values.hub.service.port }}
{{- end -}}

{{- define "egi-hub.externalDb" -}}
{{- not (has .Values.hub.db.type (list "sqlite-pvc" "sqlite-memory")) -}}
{{- end -}}

{{/*
A generated secret, kept across upgrades: the value given in values, else the one
already in the hub Secret (or in the Secret named by "secret"; lookup: empty under
`helm template`), else 64 new hex digits.
Call with (dict "root" $ "key" "crypt-key" "given" .Values.hub.cryptKey).
*/}}
{{- define "egi-hub.keptSecret" -}}
{{- if .given -}}
{{- .given -}}
{{- else -}}
{{- $name := .secret | default (include "egi-hub.hubSecret" .root) -}}
{{- /* One value per render, however many templates ask (the Secret and a checksum). */ -}}
{{- $memo := get .root.Release "egiHubKeptSecrets" | default dict -}}
{{- $_ := set .root.Release "egiHubKeptSecrets" $memo -}}
{{- $slot := printf "%s/%s" $name .key -}}
{{- if not (hasKey $memo $slot) -}}
{{- $old := lookup "v1" "Secret" .root.Release.Namespace $name -}}
{{- $data := dig "data" (dict) ($old | default (dict)) -}}
{{- if hasKey $data .key -}}
{{- $_ := set $memo $slot (index $data .key | b64dec) -}}
{{- else if .generate -}}
{{- $_ := set $memo $slot (randAlphaNum 64 | sha256sum) -}}
{{- else -}}
{{- $_ := set $memo $slot "" -}}
{{- end -}}
{{- end -}}
{{- index $memo $slot -}}
{{- end -}}
{{- end -}}

{{/* The hub's URL for people: the first ingress host, else the proxy-public Service. */}}
{{- define "egi-hub.publicUrl" -}}
{{- if and .Values.ingress.enabled .Values.ingress.hosts -}}
{{- $scheme := ternary "https" "http" (gt (len .Values.ingress.tls) 0) -}}
{{- printf "%s://%s/" $scheme (first .Values.ingress.hosts) -}}
{{- else -}}
{{- printf "http://%s.%s.svc/" (include "egi-hub.proxyPublic" .) .Release.Namespace -}}
{{- end -}}
{{- end -}}

{{/*
A Deployment's pod: its priority class, securityContext and placement, from the
component's values (hub, proxy.chp, binder: each has podSecurityContext,
priorityClassName, nodeSelector, tolerations, affinity). Call with that section.
*/}}
{{- define "egi-hub.podPlacement" -}}
{{- with .priorityClassName }}
priorityClassName: {{ . | quote }}
{{- end }}
securityContext:
  {{- toYaml .podSecurityContext | nindent 2 }}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
