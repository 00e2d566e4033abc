package deployments

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	k8slabels "k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/runner-spawner/runner-spawner/config"
)

const k8sTestSecret = "k8s-test-secret-0123456789abcdef"

// k8sSpawner is a container running the spawner, with its command and config.
type k8sSpawner struct {
	w   workload
	c   *corev1.Container
	inv spawnerInvocation
	cfg *config.File
	ls  []listener
}

// containerEnv is the container's environment as the process would see it, with
// secret values replaced by a test value long enough for any check.
func containerEnv(pod *corev1.PodTemplateSpec, c *corev1.Container, podName string) map[string]string {
	env := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name":
			env[e.Name] = podName
		default:
			env[e.Name] = k8sTestSecret
		}
	}
	return env
}

// mountedFile returns the ConfigMap or Secret and key a container sees at file.
func mountedFile(o *k8sObjects, pod *corev1.PodTemplateSpec, c *corev1.Container, file string) (data []byte, ok bool) {
	for _, m := range c.VolumeMounts {
		rel, err := filepath.Rel(m.MountPath, file)
		if err != nil || strings.HasPrefix(rel, "..") || m.SubPath != "" {
			continue
		}
		for _, v := range pod.Spec.Volumes {
			if v.Name != m.Name {
				continue
			}
			key := rel
			switch {
			case v.ConfigMap != nil:
				for _, it := range v.ConfigMap.Items {
					if it.Path == rel {
						key = it.Key
					}
				}
				if cm := o.configMaps[v.ConfigMap.Name]; cm != nil {
					d, ok := cm.Data[key]
					return []byte(d), ok
				}
			case v.Secret != nil:
				if len(v.Secret.Items) > 0 {
					key = ""
					for _, it := range v.Secret.Items {
						if it.Path == rel {
							key = it.Key
						}
					}
				}
				if s := o.secrets[v.Secret.SecretName]; s != nil && key != "" {
					if d, ok := s.StringData[key]; ok {
						return []byte(d), true
					}
					d, ok := s.Data[key]
					return d, ok
				}
			}
		}
	}
	return nil, false
}

// portNumber resolves a probe's or a Service's port against the container's ports.
func portNumber(c *corev1.Container, p intstr.IntOrString) (int, bool) {
	if p.Type == intstr.Int {
		for _, cp := range c.Ports {
			if cp.ContainerPort == p.IntVal {
				return int(p.IntVal), true
			}
		}
		return int(p.IntVal), false
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return int(cp.ContainerPort), true
		}
	}
	return 0, false
}

func checkSpawnerContainer(t *testing.T, o *k8sObjects, w workload, c *corev1.Container) *k8sSpawner {
	where := fmt.Sprintf("%s %s container %s", w.kind, w.name, c.Name)
	s := &k8sSpawner{w: w, c: c}
	var kust struct {
		Images []struct{ Name, NewName, NewTag string } `json:"images"`
	}
	if err := yaml.Unmarshal(readRepoFile(t, k8sBase+"/kustomization.yaml"), &kust); err != nil {
		t.Fatal(err)
	}
	if len(kust.Images) != 1 || c.Image != kust.Images[0].NewName+":"+kust.Images[0].NewTag {
		t.Errorf("%s: image %q is not the kustomization's images entry", where, c.Image)
	}
	if len(c.Command) > 0 {
		t.Errorf("%s: command overrides the image's entrypoint (spawner); use args", where)
	}
	inv, err := checkSpawnerArgs(c.Args)
	if err != nil {
		t.Errorf("%s: %v", where, err)
		return s
	}
	s.inv = inv
	cfgPath := inv.flags["config"]
	data, ok := mountedFile(o, w.pod, c, cfgPath)
	if !ok {
		t.Errorf("%s: --config %s is not a file of a mounted ConfigMap", where, cfgPath)
		return s
	}
	env := containerEnv(w.pod, c, w.name)
	s.cfg = parseConfig(t, fmt.Sprintf("%s (%s)", cfgPath, where), data, env, inv)
	parts := configParts(t, inv)
	applyRoleFlags(s.cfg, inv)
	s.ls = spawnerListeners(t, inv.command, s.cfg)

	// The files the config names are mounted where the role uses them (and only there:
	// a receiver gets no GitHub or cloud credentials).
	for key, file := range map[string]string{
		"openstack.clouds_file": s.cfg.OpenStack.CloudsFile, "openstack.ca_file": s.cfg.OpenStack.CAFile,
		"github.app.private_key_file": s.cfg.GitHub.App.PrivateKeyFile, "nats.creds_file": s.cfg.NATS.CredsFile,
		"nats.tls.ca_file": s.cfg.NATS.TLS.CAFile, "lxd.client_cert_file": s.cfg.LXD.ClientCertFile,
	} {
		cloud := strings.HasPrefix(key, "openstack.") || strings.HasPrefix(key, "lxd.")
		if file == "" || (key == "openstack.clouds_file" && !s.cfg.UsesBackend(config.BackendOpenStack)) ||
			(cloud && parts&config.PartCloud == 0) || (strings.HasPrefix(key, "github.") && parts&config.PartGitHub == 0) {
			continue
		}
		if _, ok := mountedFile(o, w.pod, c, file); !ok {
			t.Errorf("%s: %s %s is not a mounted file", where, key, file)
		}
	}
	// Every container port is a listener of the role, every probe a path it serves.
	for _, cp := range c.Ports {
		if !slices.ContainsFunc(s.ls, func(l listener) bool { return l.port == int(cp.ContainerPort) }) {
			t.Errorf("%s: port %s (%d) is no listener of spawner %s with this config", where, cp.Name, cp.ContainerPort, inv.command)
		}
	}
	for name, p := range map[string]*corev1.Probe{"startupProbe": c.StartupProbe, "livenessProbe": c.LivenessProbe, "readinessProbe": c.ReadinessProbe} {
		if p == nil {
			if name != "startupProbe" {
				t.Errorf("%s: no %s", where, name)
			}
			continue
		}
		if p.HTTPGet == nil {
			t.Errorf("%s: %s is not an HTTP probe", where, name)
			continue
		}
		port, ok := portNumber(c, p.HTTPGet.Port)
		if !ok || !servesPath(s.ls, port, p.HTTPGet.Path) {
			t.Errorf("%s: %s GET %s on port %s: not served there", where, name, p.HTTPGet.Path, p.HTTPGet.Port.String())
		}
	}
	if c.ReadinessProbe != nil && c.ReadinessProbe.HTTPGet != nil && c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Errorf("%s: readiness must be /readyz (NATS usable)", where)
	}
	if a := w.pod.Annotations; a["prometheus.io/scrape"] == "true" {
		port := 0
		fmt.Sscan(a["prometheus.io/port"], &port)
		if !servesPath(s.ls, port, a["prometheus.io/path"]) {
			t.Errorf("%s: prometheus.io annotations point at %s on port %s, which is not served", where, a["prometheus.io/path"], a["prometheus.io/port"])
		}
	} else {
		t.Errorf("%s: no prometheus.io/scrape annotation", where)
	}
	grace := time.Duration(0)
	if g := w.pod.Spec.TerminationGracePeriodSeconds; g != nil {
		grace = time.Duration(*g) * time.Second
	}
	if grace <= s.cfg.ShutdownTimeout {
		t.Errorf("%s: terminationGracePeriodSeconds %s is not above shutdown_timeout %s: Kubernetes would kill a stop the spawner bounds itself", where, grace, s.cfg.ShutdownTimeout)
	}
	if !slices.Contains([]string{"webhook", "consumer", "janitor"}, inv.command) {
		t.Errorf("%s: runs spawner %s; the split roles are webhook, consumer, janitor", where, inv.command)
	}
	if w.pod.Labels["app.kubernetes.io/component"] != inv.command {
		t.Errorf("%s: label app.kubernetes.io/component %q, want the role %q", where, w.pod.Labels["app.kubernetes.io/component"], inv.command)
	}

	// secret.yaml's placeholders must not start a spawner by mistake.
	real := map[string]string{}
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			if sec := o.secrets[e.ValueFrom.SecretKeyRef.Name]; sec != nil {
				real[e.Name] = sec.StringData[e.ValueFrom.SecretKeyRef.Key]
			}
		}
	}
	if _, err := config.Parse(data, func(k string) string { return real[k] }); err == nil || !strings.Contains(err.Error(), "webhook.secrets") {
		t.Errorf("%s: the placeholder secrets of secret.yaml pass config validation (%v): make the webhook secret placeholder short", where, err)
	}
	return s
}

// checkK8sScaling: the bootstrap endpoint is reachable from the runners' network as
// bootstrap.url says, through a Service and the consumers' NetworkPolicy.
func checkK8sScaling(t *testing.T, o *k8sObjects, spawners []*k8sSpawner) {
	for _, s := range spawners {
		if s.cfg == nil || s.inv.command != "consumer" {
			continue
		}
		_, port := hostPort(t, "bootstrap.url", s.cfg.Bootstrap.URL)
		var bl *listener
		for i := range s.ls {
			if s.ls[i].name == "bootstrap.listen" {
				bl = &s.ls[i]
			}
		}
		if bl == nil {
			t.Errorf("%s: the consumers serve no bootstrap endpoint", s.w.name)
			continue
		}
		var svc *corev1.Service
		for _, name := range sortedKeys(o.services) {
			cand := o.services[name]
			sel := k8slabels.SelectorFromSet(cand.Spec.Selector)
			if !sel.Matches(k8slabels.Set(s.w.pod.Labels)) {
				continue
			}
			for _, p := range cand.Spec.Ports {
				if n, ok := portNumber(s.c, p.TargetPort); ok && n == bl.port && int(p.Port) == port {
					svc = cand
				}
			}
		}
		if svc == nil {
			t.Errorf("no Service exposes the consumers' bootstrap port %d as bootstrap.url's port %d", bl.port, port)
			continue
		}
		np := o.netpols[s.w.name]
		if np == nil {
			continue
		}
		admitted := false
		for _, r := range np.Spec.Ingress {
			for _, p := range r.Ports {
				if p.Port != nil && p.Port.IntValue() == bl.port {
					for _, peer := range r.From {
						if peer.IPBlock != nil && slices.Contains(svc.Spec.LoadBalancerSourceRanges, peer.IPBlock.CIDR) {
							admitted = true
						}
					}
				}
			}
		}
		if !admitted {
			t.Errorf("NetworkPolicy %s does not admit the runners' network %v (Service %s) on the bootstrap port %d", np.Name, svc.Spec.LoadBalancerSourceRanges, svc.Name, bl.port)
		}
	}
}

// checkK8sNATS: the StatefulSet runs deployments/nats/nats-server.conf with the
// environment it reads, its routes name its own pods, and the spawner's nats.url
// names them too.
func checkK8sNATS(t *testing.T, o *k8sObjects, spawners []*k8sSpawner) {
	sts := o.statefulSets["nats"]
	if sts == nil {
		return
	}
	svc := o.services[sts.Spec.ServiceName]
	if svc == nil || svc.Spec.ClusterIP != corev1.ClusterIPNone || !svc.Spec.PublishNotReadyAddresses {
		t.Errorf("StatefulSet nats: serviceName %q must be a headless Service publishing not-ready pods (routes resolve before readiness)", sts.Spec.ServiceName)
	}
	replicas := 1
	if sts.Spec.Replicas != nil {
		replicas = int(*sts.Spec.Replicas)
	}
	if replicas != 3 {
		t.Errorf("StatefulSet nats: %d replicas, want 3", replicas)
	}
	c := &sts.Spec.Template.Spec.Containers[0]
	if want := "nats:" + semverMinor(goModVersion(t, "github.com/nats-io/nats-server/v2")) + "-alpine"; c.Image != want {
		t.Errorf("StatefulSet nats: image %q, want %q", c.Image, want)
	}
	if len(c.Args) != 2 || c.Args[0] != "--config" {
		t.Fatalf("StatefulSet nats: args %q, want --config FILE", c.Args)
	}
	data, ok := mountedFile(o, &sts.Spec.Template, c, c.Args[1])
	if !ok || string(data) != string(readRepoFile(t, natsConfPath)) {
		t.Errorf("StatefulSet nats: %s is not %s", c.Args[1], natsConfPath)
	}
	env := containerEnv(&sts.Spec.Template, c, sts.Name+"-0")
	for _, v := range natsConfVars(t) {
		if _, ok := env[v]; !ok {
			t.Errorf("StatefulSet nats: does not set %s, which %s reads", v, natsConfPath)
		}
	}
	clusterPort, _ := portNumber(c, intstr.FromString("cluster"))
	clientPort, _ := portNumber(c, intstr.FromString("client"))
	monitorPort, _ := portNumber(c, intstr.FromString("monitor"))
	for i := range replicas {
		want := fmt.Sprintf("nats://%s-%d.%s:%d", sts.Name, i, sts.Spec.ServiceName, clusterPort)
		if got := env[fmt.Sprintf("NATS_ROUTE_%d", i+1)]; got != want {
			t.Errorf("StatefulSet nats: NATS_ROUTE_%d %q, want %q", i+1, got, want)
		}
	}
	var dataMount string
	for _, m := range c.VolumeMounts {
		for _, vct := range sts.Spec.VolumeClaimTemplates {
			if m.Name == vct.Name {
				dataMount = m.MountPath
			}
		}
	}
	if dataMount == "" || env["NATS_STORE_DIR"] != dataMount {
		t.Errorf("StatefulSet nats: NATS_STORE_DIR %q is not its volume claim's mount %q", env["NATS_STORE_DIR"], dataMount)
	}
	env["NATS_STORE_DIR"] = t.TempDir()
	nc := parseNATSConf(t, env)
	if nc.clientPort != clientPort || nc.clusterPort != clusterPort || nc.monitorPort != monitorPort {
		t.Errorf("StatefulSet nats: container ports client %d cluster %d monitor %d, the config listens on %d, %d, %d", clientPort, clusterPort, monitorPort, nc.clientPort, nc.clusterPort, nc.monitorPort)
	}
	for name, p := range map[string]*corev1.Probe{"startupProbe": c.StartupProbe, "livenessProbe": c.LivenessProbe, "readinessProbe": c.ReadinessProbe} {
		if p == nil || p.HTTPGet == nil {
			t.Errorf("StatefulSet nats: no HTTP %s", name)
			continue
		}
		port, _ := portNumber(c, p.HTTPGet.Port)
		if pth, _, _ := strings.Cut(p.HTTPGet.Path, "?"); port != monitorPort || pth != "/healthz" {
			t.Errorf("StatefulSet nats: %s GET %s on %s, want /healthz on the monitor port", name, p.HTTPGet.Path, p.HTTPGet.Port.String())
		}
	}
	for _, s := range spawners {
		if s.cfg == nil {
			continue
		}
		var got []string
		for _, u := range strings.Split(s.cfg.NATS.URL, ",") {
			host, port := hostPort(t, "nats.url", strings.TrimSpace(u))
			got = append(got, fmt.Sprintf("%s:%d", host, port))
		}
		var want []string
		for i := range replicas {
			want = append(want, fmt.Sprintf("%s-%d.%s:%d", sts.Name, i, sts.Spec.ServiceName, clientPort))
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: nats.url names %v, want the StatefulSet's pods %v", s.w.name, got, want)
		}
		if s.cfg.NATS.Replicas != replicas {
			t.Errorf("%s: nats.replicas %d, want %d (one per NATS pod)", s.w.name, s.cfg.NATS.Replicas, replicas)
		}
		if s.cfg.NATS.User != nc.spawnerUser {
			t.Errorf("%s: nats.user %q is not the user of %s", s.w.name, s.cfg.NATS.User, natsConfPath)
		}
	}
}
