package deployments

import (
	"os"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8slabels "k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/runner-spawner/runner-spawner/config"
)

const (
	k8sBase      = "deployments/kubernetes"
	k8sNATS      = "deployments/nats"
	k8sNamespace = "spawner"
)

// k8sObjects is what the kustomizations render, decoded strictly into the API's
// types: a misspelt field is an error, as `kubectl apply --validate=strict` would
// say.
type k8sObjects struct {
	namespaces      []*corev1.Namespace
	serviceAccounts map[string]*corev1.ServiceAccount
	secrets         map[string]*corev1.Secret
	configMaps      map[string]*corev1.ConfigMap
	services        map[string]*corev1.Service
	deployments     map[string]*appsv1.Deployment
	statefulSets    map[string]*appsv1.StatefulSet
	ingresses       map[string]*networkingv1.Ingress
	netpols         map[string]*networkingv1.NetworkPolicy
	hpas            map[string]*autoscalingv2.HorizontalPodAutoscaler
	pdbs            map[string]*policyv1.PodDisruptionBudget
}

// workload is a Deployment or StatefulSet seen through what the checks need.
type workload struct {
	kind, name string
	selector   *metav1.LabelSelector
	pod        *corev1.PodTemplateSpec
	claims     []string // a StatefulSet's volume claim templates
}

func (o *k8sObjects) workloads() []workload {
	var out []workload
	for _, n := range sortedKeys(o.deployments) {
		d := o.deployments[n]
		out = append(out, workload{kind: "Deployment", name: n, selector: d.Spec.Selector, pod: &d.Spec.Template})
	}
	for _, n := range sortedKeys(o.statefulSets) {
		s := o.statefulSets[n]
		w := workload{kind: "StatefulSet", name: n, selector: s.Spec.Selector, pod: &s.Spec.Template}
		for _, c := range s.Spec.VolumeClaimTemplates {
			w.claims = append(w.claims, c.Name)
		}
		out = append(out, w)
	}
	return out
}

// podsSelectedBy returns the workloads whose pods sel selects.
func (o *k8sObjects) podsSelectedBy(t *testing.T, sel *metav1.LabelSelector) []workload {
	t.Helper()
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		t.Fatal(err)
	}
	var out []workload
	for _, w := range o.workloads() {
		if s.Matches(k8slabels.Set(w.pod.Labels)) {
			out = append(out, w)
		}
	}
	return out
}

// renderK8s builds the kustomizations in dirs and decodes every object.
func renderK8s(t *testing.T, dirs ...string) *k8sObjects {
	t.Helper()
	o := &k8sObjects{
		serviceAccounts: map[string]*corev1.ServiceAccount{}, secrets: map[string]*corev1.Secret{},
		configMaps: map[string]*corev1.ConfigMap{}, services: map[string]*corev1.Service{},
		deployments: map[string]*appsv1.Deployment{}, statefulSets: map[string]*appsv1.StatefulSet{},
		ingresses: map[string]*networkingv1.Ingress{}, netpols: map[string]*networkingv1.NetworkPolicy{},
		hpas: map[string]*autoscalingv2.HorizontalPodAutoscaler{}, pdbs: map[string]*policyv1.PodDisruptionBudget{},
	}
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	seen := map[string]string{}
	for _, dir := range dirs {
		rm, err := k.Run(filesys.MakeFsOnDisk(), repoPath(dir))
		if err != nil {
			t.Fatalf("kustomize build %s: %v", dir, err)
		}
		for _, r := range rm.Resources() {
			data, err := r.AsYAML()
			if err != nil {
				t.Fatal(err)
			}
			gvk := r.GetGvk()
			id := gvk.Kind + "/" + r.GetName()
			if prev, dup := seen[id]; dup {
				t.Errorf("%s: %s is also defined in %s", dir, id, prev)
			}
			seen[id] = dir
			if gvk.Kind != "Namespace" && r.GetNamespace() != k8sNamespace {
				t.Errorf("%s: %s is in namespace %q, want %q", dir, id, r.GetNamespace(), k8sNamespace)
			}
			where := dir + ": " + id
			switch gvk.ApiVersion() + " " + gvk.Kind {
			case "v1 Namespace":
				o.namespaces = append(o.namespaces, decodeStrict[corev1.Namespace](t, where, data))
			case "v1 ServiceAccount":
				o.serviceAccounts[r.GetName()] = decodeStrict[corev1.ServiceAccount](t, where, data)
			case "v1 Secret":
				o.secrets[r.GetName()] = decodeStrict[corev1.Secret](t, where, data)
			case "v1 ConfigMap":
				o.configMaps[r.GetName()] = decodeStrict[corev1.ConfigMap](t, where, data)
			case "v1 Service":
				o.services[r.GetName()] = decodeStrict[corev1.Service](t, where, data)
			case "apps/v1 Deployment":
				o.deployments[r.GetName()] = decodeStrict[appsv1.Deployment](t, where, data)
			case "apps/v1 StatefulSet":
				o.statefulSets[r.GetName()] = decodeStrict[appsv1.StatefulSet](t, where, data)
			case "networking.k8s.io/v1 Ingress":
				o.ingresses[r.GetName()] = decodeStrict[networkingv1.Ingress](t, where, data)
			case "networking.k8s.io/v1 NetworkPolicy":
				o.netpols[r.GetName()] = decodeStrict[networkingv1.NetworkPolicy](t, where, data)
			case "autoscaling/v2 HorizontalPodAutoscaler":
				o.hpas[r.GetName()] = decodeStrict[autoscalingv2.HorizontalPodAutoscaler](t, where, data)
			case "policy/v1 PodDisruptionBudget":
				o.pdbs[r.GetName()] = decodeStrict[policyv1.PodDisruptionBudget](t, where, data)
			default:
				t.Errorf("%s: unexpected kind %s", where, gvk)
			}
		}
	}
	return o
}

func decodeStrict[T any](t *testing.T, where string, data []byte) *T {
	t.Helper()
	v := new(T)
	if err := yaml.UnmarshalStrict(data, v); err != nil {
		t.Errorf("%s: %v", where, err)
	}
	return v
}

// TestKustomizationsListEveryFile: no manifest sits beside a kustomization without
// being part of it (and so never checked or applied).
func TestKustomizationsListEveryFile(t *testing.T) {
	for _, dir := range []string{k8sBase, k8sNATS} {
		var k struct {
			Resources          []string `json:"resources"`
			ConfigMapGenerator []struct {
				Files []string `json:"files"`
			} `json:"configMapGenerator"`
		}
		if err := yaml.Unmarshal(readRepoFile(t, dir+"/kustomization.yaml"), &k); err != nil {
			t.Fatal(err)
		}
		listed := slices.Clone(k.Resources)
		for _, g := range k.ConfigMapGenerator {
			listed = append(listed, g.Files...)
		}
		entries, err := os.ReadDir(repoPath(dir))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			n := e.Name()
			if e.IsDir() || n == "kustomization.yaml" || (!strings.HasSuffix(n, ".yaml") && !strings.HasSuffix(n, ".conf")) {
				continue
			}
			if !slices.Contains(listed, n) {
				t.Errorf("%s/%s is not in its kustomization.yaml", dir, n)
			}
		}
	}
}

func TestKubernetesManifests(t *testing.T) {
	o := renderK8s(t, k8sBase, k8sNATS)

	if len(o.namespaces) != 1 || o.namespaces[0].Name != k8sNamespace {
		t.Errorf("%s: want one Namespace %q", k8sBase, k8sNamespace)
	}
	for kind, want := range map[string][]string{
		"Deployment":  {"spawner-consumer", "spawner-janitor", "spawner-webhook"},
		"StatefulSet": {"nats"},
		"HPA":         {"spawner-consumer"},
		"PDB":         {"nats", "spawner-consumer", "spawner-janitor", "spawner-webhook"},
		"Ingress":     {"spawner-webhook"},
		"Policy":      {"nats", "spawner-consumer", "spawner-janitor", "spawner-webhook"},
	} {
		var got []string
		switch kind {
		case "Deployment":
			got = sortedKeys(o.deployments)
		case "StatefulSet":
			got = sortedKeys(o.statefulSets)
		case "HPA":
			got = sortedKeys(o.hpas)
		case "PDB":
			got = sortedKeys(o.pdbs)
		case "Ingress":
			got = sortedKeys(o.ingresses)
		case "Policy":
			got = sortedKeys(o.netpols)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s objects %v, want %v", kind, got, want)
		}
	}
	if j := o.deployments["spawner-janitor"]; j != nil && (j.Spec.Replicas == nil || *j.Spec.Replicas != 2) {
		t.Errorf("spawner-janitor: want 2 replicas (one active by the lease, one standing by)")
	}

	var spawners []*k8sSpawner
	for _, w := range o.workloads() {
		checkPodSpec(t, o, w)
		if !slices.Equal(k8sSelectorKeys(w.selector), sortedKeys(w.selector.MatchLabels)) || len(w.selector.MatchLabels) == 0 {
			t.Errorf("%s %s: use matchLabels only", w.kind, w.name)
		}
		if len(o.podsSelectedBy(t, w.selector)) != 1 {
			t.Errorf("%s %s: its selector matches %d workloads' pods, want its own only", w.kind, w.name, len(o.podsSelectedBy(t, w.selector)))
		}
		for i := range w.pod.Spec.Containers {
			c := &w.pod.Spec.Containers[i]
			if strings.Contains(c.Image, "runner-spawner") {
				spawners = append(spawners, checkSpawnerContainer(t, o, w, c))
			}
		}
	}
	checkK8sServices(t, o)
	checkK8sPolicies(t, o)
	checkK8sScaling(t, o, spawners)
	checkK8sNATS(t, o, spawners)
}

func k8sSelectorKeys(sel *metav1.LabelSelector) []string {
	keys := sortedKeys(sel.MatchLabels)
	for _, e := range sel.MatchExpressions {
		keys = append(keys, e.Key)
	}
	slices.Sort(keys)
	return keys
}

// checkPodSpec: the restricted Pod Security Standard (the namespace enforces it),
// volumes that exist, secrets and config maps that exist.
func checkPodSpec(t *testing.T, o *k8sObjects, w workload) {
	where := w.kind + " " + w.name
	ps := w.pod.Spec
	sel, _ := metav1.LabelSelectorAsSelector(w.selector)
	if !sel.Matches(k8slabels.Set(w.pod.Labels)) {
		t.Errorf("%s: the selector does not select the pod template's labels", where)
	}
	if ps.HostNetwork || ps.HostPID || ps.HostIPC {
		t.Errorf("%s: uses the host's namespaces", where)
	}
	if ps.ServiceAccountName != "" && o.serviceAccounts[ps.ServiceAccountName] == nil {
		t.Errorf("%s: service account %s does not exist", where, ps.ServiceAccountName)
	}
	if ps.AutomountServiceAccountToken == nil || *ps.AutomountServiceAccountToken {
		t.Errorf("%s: mounts a service account token it does not need", where)
	}
	podSC := ps.SecurityContext
	if podSC == nil {
		podSC = &corev1.PodSecurityContext{}
	}
	volumes := map[string]*corev1.Volume{}
	for i := range ps.Volumes {
		v := &ps.Volumes[i]
		volumes[v.Name] = v
		switch {
		case v.HostPath != nil:
			t.Errorf("%s: volume %s is a hostPath", where, v.Name)
		case v.ConfigMap != nil:
			cm := o.configMaps[v.ConfigMap.Name]
			if cm == nil {
				t.Errorf("%s: volume %s: ConfigMap %s does not exist", where, v.Name, v.ConfigMap.Name)
				continue
			}
			for _, it := range v.ConfigMap.Items {
				if _, ok := cm.Data[it.Key]; !ok {
					t.Errorf("%s: volume %s: ConfigMap %s has no key %s", where, v.Name, cm.Name, it.Key)
				}
			}
		case v.Secret != nil:
			s := o.secrets[v.Secret.SecretName]
			if s == nil {
				t.Errorf("%s: volume %s: Secret %s does not exist", where, v.Name, v.Secret.SecretName)
				continue
			}
			for _, it := range v.Secret.Items {
				if !secretHasKey(s, it.Key) {
					t.Errorf("%s: volume %s: Secret %s has no key %s", where, v.Name, s.Name, it.Key)
				}
			}
		}
	}
	for _, c := range ps.Containers {
		cw := where + " container " + c.Name
		sc := c.SecurityContext
		if sc == nil {
			t.Errorf("%s: no securityContext", cw)
			continue
		}
		if !isTrue(sc.RunAsNonRoot) && !isTrue(podSC.RunAsNonRoot) {
			t.Errorf("%s: runAsNonRoot is not set", cw)
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Errorf("%s: allowPrivilegeEscalation must be false", cw)
		}
		if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
			t.Errorf("%s: must drop ALL capabilities and add none", cw)
		}
		seccomp := sc.SeccompProfile
		if seccomp == nil {
			seccomp = podSC.SeccompProfile
		}
		if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("%s: seccompProfile must be RuntimeDefault", cw)
		}
		if !isTrue(sc.ReadOnlyRootFilesystem) {
			t.Errorf("%s: readOnlyRootFilesystem must be true", cw)
		}
		if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
			t.Errorf("%s: set cpu and memory requests and a memory limit", cw)
		}
		for _, m := range c.VolumeMounts {
			if volumes[m.Name] == nil && !slices.Contains(w.claims, m.Name) {
				t.Errorf("%s: mounts volume %s, which the pod does not have", cw, m.Name)
			}
		}
		for _, e := range c.Env {
			if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
				continue
			}
			ref := e.ValueFrom.SecretKeyRef
			if s := o.secrets[ref.Name]; s == nil || !secretHasKey(s, ref.Key) {
				if !isTrue(ref.Optional) {
					t.Errorf("%s: env %s: Secret %s has no key %s", cw, e.Name, ref.Name, ref.Key)
				}
			}
		}
	}
}

func isTrue(b *bool) bool { return b != nil && *b }

func secretHasKey(s *corev1.Secret, key string) bool {
	_, a := s.StringData[key]
	_, b := s.Data[key]
	return a || b
}

// checkK8sServices: Services, the Ingress and PDBs select real pods and ports.
func checkK8sServices(t *testing.T, o *k8sObjects) {
	for _, name := range sortedKeys(o.services) {
		svc := o.services[name]
		ws := o.podsSelectedBy(t, &metav1.LabelSelector{MatchLabels: svc.Spec.Selector})
		if len(svc.Spec.Selector) == 0 || len(ws) == 0 {
			t.Errorf("Service %s selects no pods", name)
			continue
		}
		for _, p := range svc.Spec.Ports {
			for _, w := range ws {
				found := false
				for i := range w.pod.Spec.Containers {
					if _, ok := portNumber(&w.pod.Spec.Containers[i], p.TargetPort); ok {
						found = true
					}
				}
				if !found {
					t.Errorf("Service %s port %s: targetPort %s is no container port of %s", name, p.Name, p.TargetPort.String(), w.name)
				}
			}
		}
	}
	for _, name := range sortedKeys(o.ingresses) {
		for _, r := range o.ingresses[name].Spec.Rules {
			for _, p := range r.HTTP.Paths {
				b := p.Backend.Service
				svc := o.services[b.Name]
				if svc == nil {
					t.Errorf("Ingress %s: Service %s does not exist", name, b.Name)
					continue
				}
				if !slices.ContainsFunc(svc.Spec.Ports, func(sp corev1.ServicePort) bool {
					return sp.Name == b.Port.Name && b.Port.Name != "" || sp.Port == b.Port.Number && b.Port.Number != 0
				}) {
					t.Errorf("Ingress %s: Service %s has no port %v", name, b.Name, b.Port)
				}
				// The path must be the receivers' webhook.path.
				for _, w := range o.podsSelectedBy(t, &metav1.LabelSelector{MatchLabels: svc.Spec.Selector}) {
					for i := range w.pod.Spec.Containers {
						c := &w.pod.Spec.Containers[i]
						if inv, err := checkSpawnerArgs(c.Args); err == nil && inv.command == "webhook" {
							if data, ok := mountedFile(o, w.pod, c, inv.flags["config"]); ok {
								cfg, _ := config.Parse(data, nil)
								if cfg != nil && cfg.Webhook.Path != p.Path {
									t.Errorf("Ingress %s: path %s, the receivers serve %s", name, p.Path, cfg.Webhook.Path)
								}
							}
						}
					}
				}
			}
		}
	}
	for _, name := range sortedKeys(o.pdbs) {
		if ws := o.podsSelectedBy(t, o.pdbs[name].Spec.Selector); len(ws) != 1 {
			t.Errorf("PodDisruptionBudget %s selects %d workloads, want 1", name, len(ws))
		}
	}
	for _, name := range sortedKeys(o.hpas) {
		h := o.hpas[name]
		ref := h.Spec.ScaleTargetRef
		d := o.deployments[ref.Name]
		if ref.Kind != "Deployment" || ref.APIVersion != "apps/v1" || d == nil {
			t.Errorf("HorizontalPodAutoscaler %s scales %s %s, which does not exist", name, ref.Kind, ref.Name)
			continue
		}
		if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 1 || *h.Spec.MinReplicas > h.Spec.MaxReplicas {
			t.Errorf("HorizontalPodAutoscaler %s: minReplicas must be 1..maxReplicas", name)
		}
		for _, m := range h.Spec.Metrics {
			if m.Type == autoscalingv2.ResourceMetricSourceType && m.Resource.Name == corev1.ResourceCPU {
				for _, c := range d.Spec.Template.Spec.Containers {
					if c.Resources.Requests.Cpu().IsZero() {
						t.Errorf("HorizontalPodAutoscaler %s scales on CPU but %s has no cpu request", name, c.Name)
					}
				}
			}
		}
	}
}

// checkK8sPolicies: each NetworkPolicy selects pods, admits their real ports, and
// lets them reach the pods they talk to.
func checkK8sPolicies(t *testing.T, o *k8sObjects) {
	for _, name := range sortedKeys(o.netpols) {
		np := o.netpols[name]
		ws := o.podsSelectedBy(t, &np.Spec.PodSelector)
		if len(ws) == 0 {
			t.Errorf("NetworkPolicy %s selects no pods", name)
			continue
		}
		if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) || !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) {
			t.Errorf("NetworkPolicy %s: restrict both Ingress and Egress", name)
		}
		for _, r := range np.Spec.Ingress {
			for _, p := range r.Ports {
				for _, w := range ws {
					if !workloadHasPort(w, p.Port) {
						t.Errorf("NetworkPolicy %s admits port %s, which %s does not listen on", name, p.Port.String(), w.name)
					}
				}
			}
		}
		for _, r := range np.Spec.Egress {
			for _, peer := range r.To {
				if peer.PodSelector == nil || peer.NamespaceSelector != nil {
					continue
				}
				targets := o.podsSelectedBy(t, peer.PodSelector)
				if len(targets) == 0 {
					t.Errorf("NetworkPolicy %s: egress to pods %v that no workload has", name, peer.PodSelector.MatchLabels)
				}
				for _, p := range r.Ports {
					for _, w := range targets {
						if !workloadHasPort(w, p.Port) {
							t.Errorf("NetworkPolicy %s: egress port %s, which %s does not listen on", name, p.Port.String(), w.name)
						}
					}
				}
			}
		}
	}
}

func workloadHasPort(w workload, p *intstr.IntOrString) bool {
	if p == nil {
		return true
	}
	for i := range w.pod.Spec.Containers {
		if _, ok := portNumber(&w.pod.Spec.Containers[i], *p); ok {
			return true
		}
	}
	return false
}
