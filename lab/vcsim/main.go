// Command rackflow-vcsim serves a vCenter simulator (govmomi's vcsim library)
// populated from a JSON spec: one datacenter, clusters and standalone ESXi
// hosts with Dell identities (service tag in hardware.systemInfo.serialNumber
// and in otherIdentifyingInfo "ServiceTag", vendor, model, ESXi version).
//
// vcsim finishes every task instantly; hosts here run EnterMaintenanceMode_Task
// and ExitMaintenanceMode_Task asynchronously instead, with a per-host delay and
// an optional fault, honour the task's timeout and CancelTask, and refuse to
// enter (exit) maintenance mode when already in (out of) it, like vCenter does.
//
// Usage: rackflow-vcsim [-spec FILE]. Without -spec the JSON spec is read from
// stdin and the simulator exits when stdin reaches EOF (the launcher closes it,
// or died). Once serving, one JSON line is printed on stdout: url, username,
// password, cert_pem, admin_url, host and cluster moids.
//
// A small admin API on the same listener changes hosts at run time:
// GET /lab/hosts, POST /lab/hosts/{name} with any of the host spec's runtime
// fields (connection_state, reconnect_after_s, in_maintenance, *_mm_delay_s,
// *_mm_fault).
package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/url"
	"os"
	"os/signal"
	"syscall"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/types"
)

// HostSpec describes one ESXi host.
type HostSpec struct {
	Name            string  `json:"name"`
	ServiceTag      string  `json:"service_tag"`
	SerialNumber    *string `json:"serial_number"`
	Vendor          string  `json:"vendor"`
	Model           string  `json:"model"`
	EsxiVersion     string  `json:"esxi_version"`
	EsxiBuild       string  `json:"esxi_build"`
	InMaintenance   bool    `json:"in_maintenance"`
	ConnectionState string  `json:"connection_state"`
	EnterMMDelayS   float64 `json:"enter_mm_delay_s"`
	EnterMMFault    string  `json:"enter_mm_fault"`
	ExitMMDelayS    float64 `json:"exit_mm_delay_s"`
	ExitMMFault     string  `json:"exit_mm_fault"`
}

// ClusterSpec is a cluster and its hosts.
type ClusterSpec struct {
	Name  string     `json:"name"`
	Hosts []HostSpec `json:"hosts"`
}

// Spec is the whole simulated vCenter.
type Spec struct {
	Username   string        `json:"username"`
	Password   string        `json:"password"`
	Datacenter string        `json:"datacenter"`
	Listen     string        `json:"listen"`
	CertFile   string        `json:"cert_file"`
	KeyFile    string        `json:"key_file"`
	Speed      float64       `json:"speed"`
	Clusters   []ClusterSpec `json:"clusters"`
	Hosts      []HostSpec    `json:"hosts"`
}

// Ready is the line printed on stdout once the simulator serves.
type Ready struct {
	URL      string            `json:"url"`
	Username string            `json:"username"`
	Password string            `json:"password"`
	CertPEM  string            `json:"cert_pem"`
	AdminURL string            `json:"admin_url"`
	Hosts    map[string]string `json:"hosts"`
	Clusters map[string]string `json:"clusters"`
}

func readSpec(path string) (*Spec, error) {
	var r io.Reader = os.Stdin
	if path != "" {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	spec := new(Spec)
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(spec); err != nil {
		return nil, fmt.Errorf("spec: %w", err)
	}
	if spec.Username == "" || spec.Password == "" {
		return nil, errors.New("spec: username and password are required")
	}
	if spec.Datacenter == "" {
		spec.Datacenter = "Datacenter"
	}
	if spec.Listen == "" {
		spec.Listen = "127.0.0.1:0"
	}
	if spec.Speed <= 0 {
		spec.Speed = 1
	}
	seen := map[string]bool{}
	check := func(h *HostSpec) error {
		if h.Name == "" {
			return errors.New("spec: every host needs a name")
		}
		if seen[h.Name] {
			return fmt.Errorf("spec: host %q given twice", h.Name)
		}
		seen[h.Name] = true
		return applyHostDefaults(h)
	}
	for i := range spec.Clusters {
		if spec.Clusters[i].Name == "" {
			return nil, errors.New("spec: every cluster needs a name")
		}
		for j := range spec.Clusters[i].Hosts {
			if err := check(&spec.Clusters[i].Hosts[j]); err != nil {
				return nil, err
			}
		}
	}
	for i := range spec.Hosts {
		if err := check(&spec.Hosts[i]); err != nil {
			return nil, err
		}
	}
	return spec, nil
}

func applyHostDefaults(h *HostSpec) error {
	if h.Vendor == "" {
		h.Vendor = "Dell Inc."
	}
	if h.Model == "" {
		h.Model = "PowerEdge R640"
	}
	if h.EsxiVersion == "" {
		h.EsxiVersion = "7.0.3"
	}
	if h.EsxiBuild == "" {
		h.EsxiBuild = "21930508"
	}
	if h.ConnectionState == "" {
		h.ConnectionState = string(types.HostSystemConnectionStateConnected)
	}
	if _, err := connectionState(h.ConnectionState); err != nil {
		return fmt.Errorf("spec: host %q: %w", h.Name, err)
	}
	for _, name := range []string{h.EnterMMFault, h.ExitMMFault} {
		if name != "" && methodFault(name, "") == nil {
			return fmt.Errorf("spec: host %q: unknown fault %q", h.Name, name)
		}
	}
	return nil
}

// build creates the datacenter, clusters and hosts through the simulator's
// own API (in process), then swaps every host for a labHost.
func build(ctx context.Context, svc *simulator.Service, labs *labHosts, spec *Spec) (map[string]string, map[string]string, error) {
	c, err := vim25.NewClient(ctx, svc)
	if err != nil {
		return nil, nil, err
	}
	root := object.NewRootFolder(c)
	dc, err := root.CreateDatacenter(ctx, spec.Datacenter)
	if err != nil {
		return nil, nil, err
	}
	folders, err := dc.Folders(ctx)
	if err != nil {
		return nil, nil, err
	}
	hosts := map[string]string{}
	clusters := map[string]string{}
	add := func(h HostSpec, f func(types.HostConnectSpec) (*object.Task, error)) error {
		task, err := f(types.HostConnectSpec{HostName: h.Name})
		if err != nil {
			return err
		}
		info, err := task.WaitForResult(ctx, nil)
		if err != nil {
			return fmt.Errorf("add host %q: %w", h.Name, err)
		}
		ref := info.Result.(types.ManagedObjectReference)
		hosts[h.Name] = ref.Value
		return installHost(labs, ref, h, spec.Speed)
	}
	for _, cs := range spec.Clusters {
		cluster, err := folders.HostFolder.CreateCluster(ctx, cs.Name, types.ClusterConfigSpecEx{})
		if err != nil {
			return nil, nil, fmt.Errorf("cluster %q: %w", cs.Name, err)
		}
		clusters[cs.Name] = cluster.Reference().Value
		for _, h := range cs.Hosts {
			err := add(h, func(s types.HostConnectSpec) (*object.Task, error) {
				return cluster.AddHost(ctx, s, true, nil, nil)
			})
			if err != nil {
				return nil, nil, err
			}
		}
	}
	for _, h := range spec.Hosts {
		err := add(h, func(s types.HostConnectSpec) (*object.Task, error) {
			return folders.HostFolder.AddStandaloneHost(ctx, s, true, nil, nil)
		})
		if err != nil {
			return nil, nil, err
		}
	}
	return hosts, clusters, nil
}

func main() {
	specPath := flag.String("spec", "", "JSON spec file (default: read from stdin, exit at stdin EOF)")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("rackflow-vcsim: ")
	log.SetOutput(os.Stderr)

	spec, err := readSpec(*specPath)
	if err != nil {
		log.Fatal(err)
	}
	model := simulator.VPX()
	model.Datacenter = 0
	model.Host = 0
	model.Cluster = 0
	model.ClusterHost = 0
	model.Portgroup = 0
	model.Datastore = 0
	model.Machine = 0
	model.Autostart = false
	if err := model.Create(); err != nil {
		log.Fatal(err)
	}
	defer model.Remove()

	ctx := context.Background()
	labs := newLabHosts()
	hosts, clusters, err := build(ctx, model.Service, labs, spec)
	if err != nil {
		log.Fatal(err)
	}

	model.Service.Listen = &url.URL{Host: spec.Listen, User: url.UserPassword(spec.Username, spec.Password)}
	model.Service.TLS = new(tls.Config)
	if spec.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(spec.CertFile, spec.KeyFile)
		if err != nil {
			log.Fatalf("tls: %v", err)
		}
		model.Service.TLS.Certificates = []tls.Certificate{cert}
	}
	registerAdmin(model.Service, labs)
	server := model.Service.NewServer()
	defer server.Close()

	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: server.TLS.Certificates[0].Certificate[0]})
	u := *server.URL
	u.User = nil
	admin := url.URL{Scheme: u.Scheme, Host: u.Host, Path: "/lab/hosts"}
	ready := Ready{
		URL: u.String(), Username: spec.Username, Password: spec.Password,
		CertPEM: string(certPEM), AdminURL: admin.String(), Hosts: hosts, Clusters: clusters,
	}
	line, _ := json.Marshal(ready)
	fmt.Println(string(line))

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	if *specPath == "" {
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin) // the launcher closed stdin, or died
			stop <- syscall.SIGTERM
		}()
	}
	<-stop
}
