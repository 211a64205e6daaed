{{/*
Shared parts of the chart's NetworkPolicies (hub, proxy, single-user servers, Binder).

The keys are zero-to-jupyterhub's (networkPolicy.{enabled, ingress, egress,
egressAllowRules, allowedIngressPorts}) with the same meaning. Every policy names both
policy types, so a pod it selects may send and receive only what some rule allows.
Ports are the pods' container ports (what a NetworkPolicy sees after a Service's
address is translated), never the Services' ports.
*/}}

{{/* The cloud metadata server (AWS, GCP, Azure, OpenStack): node credentials live there. */}}
{{- define "egi-hub.netpol.metadataIP" -}}169.254.169.254{{- end -}}

{{/*
Never reached through nonPrivateIPs besides the private ranges: all of link-local
169.254.0.0/16 (the metadata server, and agents beside it such as EKS Pod Identity's
169.254.170.23) and the shared address space 100.64.0.0/10 (carrier-grade NAT: pod
ranges of some clouds, Alibaba's metadata server at 100.100.100.200).
*/}}
{{- define "egi-hub.netpol.internalCIDRs" -}}
{{- list "100.64.0.0/10" "169.254.0.0/16" | toJson -}}
{{- end -}}

{{/* The private IPv4 ranges (RFC 1918): pods, Services, nodes, the site's LAN. */}}
{{- define "egi-hub.netpol.privateCIDRs" -}}
{{- list "10.0.0.0/8" "172.16.0.0/12" "192.168.0.0/16" | toJson -}}
{{- end -}}

{{/* The pods' ports (container ports, as the policies see them). */}}
{{- define "egi-hub.netpol.hubPort" -}}8081{{- end -}}
{{- define "egi-hub.netpol.proxyHttpPort" -}}8000{{- end -}}
{{- define "egi-hub.netpol.proxyApiPort" -}}8001{{- end -}}

{{/*
The single-user servers' port: KubeSpawner's 8888 unless the site file changes it
(EGIKubeSpawner.port, else KubeSpawner.port), as the hub will use it.
*/}}
{{- define "egi-hub.netpol.singleuserPort" -}}
{{- $c := .Values.hub.config | default (dict) -}}
{{- $port := dig "EGIKubeSpawner" "port" (dig "KubeSpawner" "port" 8888 $c) $c -}}
{{- int $port -}}
{{- end -}}

{{/* The Binder service's container port (the hub's service URL's port). */}}
{{- define "egi-hub.netpol.binderPort" -}}8890{{- end -}}

{{/* The per-VO namespaces single-user servers may run in (singleuser.voNamespaces), as JSON. */}}
{{- define "egi-hub.netpol.voNamespaces" -}}
{{- $vo := dig "voNamespaces" (dict) (.Values.singleuser | default dict) -}}
{{- $names := list -}}
{{- if $vo.enabled -}}
{{- range $key, $ns := ($vo.namespaces | default dict) -}}
{{- $name := $ns.name | default $key -}}
{{- if ne $name $.Release.Namespace -}}
{{- $names = append $names $name -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $names | uniq | sortAlpha | toJson -}}
{{- end -}}

{{/* Single-user server pods: KubeSpawner's component label and this release's instance. */}}
{{- define "egi-hub.netpol.singleuserLabels" -}}
app.kubernetes.io/component: singleuser-server
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/*
Peers (a `from` or `to` list) naming this release's single-user servers: in the
release's namespace and in each per-VO namespace.
*/}}
{{- define "egi-hub.netpol.singleuserPeers" -}}
- podSelector:
    matchLabels:
      {{- include "egi-hub.netpol.singleuserLabels" . | nindent 6 }}
{{- with include "egi-hub.netpol.voNamespaces" . | fromJsonArray }}
- namespaceSelector:
    matchExpressions:
      - key: kubernetes.io/metadata.name
        operator: In
        values: {{ toJson . }}
  podSelector:
    matchLabels:
      {{- include "egi-hub.netpol.singleuserLabels" $ | nindent 6 }}
{{- end }}
{{- end -}}

{{/*
A pod of this release (call with dict "root" $ "component" "hub" and optionally
"namespace": then it is seen from another namespace, by that namespace's name).
*/}}
{{- define "egi-hub.netpol.releasePeer" -}}
- podSelector:
    matchLabels:
      {{- include "egi-hub.selectorLabels" . | nindent 6 }}
  {{- with .namespace }}
  namespaceSelector:
    matchLabels:
      kubernetes.io/metadata.name: {{ . | quote }}
  {{- end }}
{{- end -}}

{{/* Ingress on these ports from anywhere (networkPolicy.allowedIngressPorts). */}}
{{- define "egi-hub.netpol.allowedIngressPorts" -}}
{{- with . }}
- ports:
    {{- range . }}
    - port: {{ . }}
    {{- end }}
{{- end }}
{{- end -}}

{{/*
The egress rules that networkPolicy.egressAllowRules turns on, then networkPolicy.egress
as given. Call with (dict "root" $ "netpol" .Values.hub.networkPolicy).
- dnsPorts*: port 53 (UDP and TCP) only, on the resolver wherever the cluster keeps it
  (the metadata server on some clouds, kube-dns in kube-system, a node-local cache at a
  private address).
- nonPrivateIPs: the public internet; never the private ranges, the shared address
  space (100.64.0.0/10) nor link-local addresses (169.254.0.0/16, the metadata server).
- privateIPs: the private ranges (the Kubernetes API server, an in-cluster database, any
  other pod or node): whatever listens there unauthenticated becomes reachable.
- cloudMetadataServer: the metadata server (cloud IAM for the pod, and the node's own
  credentials on many clouds).
*/}}
{{- define "egi-hub.netpol.egressRules" -}}
{{- $allow := .netpol.egressAllowRules -}}
{{- $private := include "egi-hub.netpol.privateCIDRs" . | fromJsonArray -}}
{{- $metadata := printf "%s/32" (include "egi-hub.netpol.metadataIP" .) -}}
{{- if or $allow.dnsPortsCloudMetadataServer $allow.dnsPortsKubeSystemNamespace $allow.dnsPortsPrivateIPs }}
- ports:
    - {port: 53, protocol: UDP}
    - {port: 53, protocol: TCP}
  to:
    {{- if $allow.dnsPortsCloudMetadataServer }}
    - ipBlock: {cidr: {{ $metadata }}}
    {{- end }}
    {{- if $allow.dnsPortsKubeSystemNamespace }}
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: kube-system
    {{- end }}
    {{- if $allow.dnsPortsPrivateIPs }}
    {{- range $private }}
    - ipBlock: {cidr: {{ . }}}
    {{- end }}
    {{- end }}
{{- end }}
{{- if $allow.nonPrivateIPs }}
- to:
    - ipBlock:
        cidr: 0.0.0.0/0
        except: {{ concat $private (include "egi-hub.netpol.internalCIDRs" . | fromJsonArray) | toJson }}
{{- end }}
{{- if $allow.privateIPs }}
- to:
    {{- range $private }}
    - ipBlock: {cidr: {{ . }}}
    {{- end }}
{{- end }}
{{- if $allow.cloudMetadataServer }}
- to:
    - ipBlock: {cidr: {{ $metadata }}}
{{- end }}
{{- with .netpol.egress }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The metadata of a NetworkPolicy: call with (dict "root" $ "component" "hub" "name" ...). */}}
{{- define "egi-hub.netpol.metadata" -}}
metadata:
  name: {{ .name }}
  {{- with .namespace }}
  namespace: {{ . | quote }}
  {{- end }}
  labels:
    {{- include "egi-hub.labels" . | nindent 4 }}
{{- end -}}
