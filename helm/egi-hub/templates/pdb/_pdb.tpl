{{/*
A PodDisruptionBudget (z2jh's pdb keys: enabled, maxUnavailable, minAvailable). Call
with (dict "root" $ "component" "hub" "name" ... "pdb" .Values.hub.pdb). Exactly one of
the two may be set (null: not set); the hub and the proxy run one replica each, so
values.yaml explains which budget lets a node drain go on.
*/}}
{{- define "egi-hub.pdb" -}}
{{- $max := .pdb.maxUnavailable -}}
{{- $min := .pdb.minAvailable -}}
{{- if and (kindIs "invalid" $max) (kindIs "invalid" $min) -}}
{{- fail (printf "%s.pdb: set maxUnavailable or minAvailable (one of them)" .key) -}}
{{- end -}}
{{- if not (or (kindIs "invalid" $max) (kindIs "invalid" $min)) -}}
{{- fail (printf "%s.pdb: maxUnavailable and minAvailable are both set: set one, the other null" .key) -}}
{{- end -}}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ .name }}
  labels:
    {{- include "egi-hub.labels" . | nindent 4 }}
spec:
  {{- if not (kindIs "invalid" $max) }}
  maxUnavailable: {{ $max | toJson }}
  {{- else }}
  minAvailable: {{ $min | toJson }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "egi-hub.selectorLabels" . | nindent 6 }}
{{- end -}}
