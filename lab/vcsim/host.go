package main

// Hosts with Dell identities and maintenance-mode tasks that take time.
//
// A labHost replaces vcsim's HostSystem in the object registry. It embeds the
// simulator's HostSystem BY VALUE as its first field: vcsim's property
// collector digs the mo.HostSystem out of wrapper types through field 0
// (getManagedObject), and method dispatch finds labHost's own
// EnterMaintenanceModeTask / ExitMaintenanceModeTask before the promoted ones.

import (
	"fmt"
	"sync"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// knobs are the run-time settings of one host, in lab seconds.
type knobs struct {
	EnterMMDelayS float64 `json:"enter_mm_delay_s"`
	EnterMMFault  string  `json:"enter_mm_fault"`
	ExitMMDelayS  float64 `json:"exit_mm_delay_s"`
	ExitMMFault   string  `json:"exit_mm_fault"`
}

type labHost struct {
	simulator.HostSystem

	speed     float64
	mu        sync.Mutex // guards knobs and reconnect; a named field, so labHost is no sync.Locker
	knobs     knobs
	reconnect *time.Timer
}

// labHosts indexes the hosts by name for the admin API.
type labHosts struct {
	mu     sync.Mutex
	byName map[string]*labHost
	order  []string
}

func newLabHosts() *labHosts { return &labHosts{byName: map[string]*labHost{}} }

func (l *labHosts) get(name string) *labHost {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.byName[name]
}

func (l *labHosts) all() []*labHost {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]*labHost, 0, len(l.order))
	for _, name := range l.order {
		out = append(out, l.byName[name])
	}
	return out
}

func element(key, label, summary string) *types.ElementDescription {
	return &types.ElementDescription{
		Description: types.Description{Label: label, Summary: summary},
		Key:         key,
	}
}

// identifyingInfo is what ESXi reports for a Dell PowerEdge: the service tag
// as ServiceTag and as EnclosureSerialNumberTag, plus an empty asset tag.
func identifyingInfo(tag string) []types.HostSystemIdentificationInfo {
	info := []types.HostSystemIdentificationInfo{
		{IdentifierValue: "", IdentifierType: element("AssetTag", "Asset Tag", "Asset tag of the system")},
	}
	if tag != "" {
		info = append(info,
			types.HostSystemIdentificationInfo{
				IdentifierValue: tag,
				IdentifierType:  element("ServiceTag", "Service tag", "Service tag of the system"),
			},
			types.HostSystemIdentificationInfo{
				IdentifierValue: tag,
				IdentifierType: element("EnclosureSerialNumberTag", "Enclosure serial number tag",
					"Enclosure serial number tag of the system"),
			},
		)
	}
	return info
}

func connectionState(name string) (types.HostSystemConnectionState, error) {
	switch s := types.HostSystemConnectionState(name); s {
	case types.HostSystemConnectionStateConnected, types.HostSystemConnectionStateDisconnected,
		types.HostSystemConnectionStateNotResponding:
		return s, nil
	}
	return "", fmt.Errorf("connection_state %q: want connected, disconnected or notResponding", name)
}

// installHost applies the spec to the host vcsim created and swaps in a labHost.
func installHost(hosts *labHosts, ref types.ManagedObjectReference, spec HostSpec, speed float64) error {
	orig, ok := simulator.Map.Get(ref).(*simulator.HostSystem)
	if !ok {
		return fmt.Errorf("host %s: not a simulator HostSystem", ref.Value)
	}
	h := &labHost{HostSystem: *orig, speed: speed}
	// NewHostSystem pointed Summary.Runtime at the original's Runtime.
	h.Summary.Runtime = &h.Runtime

	serial := spec.ServiceTag
	if spec.SerialNumber != nil {
		serial = *spec.SerialNumber
	}
	ids := identifyingInfo(spec.ServiceTag)
	hw := *h.Hardware
	hw.SystemInfo.Vendor, hw.SystemInfo.Model = spec.Vendor, spec.Model
	hw.SystemInfo.SerialNumber = serial
	hw.SystemInfo.OtherIdentifyingInfo = ids
	h.Hardware = &hw
	summary := *h.Summary.Hardware
	summary.Vendor, summary.Model, summary.OtherIdentifyingInfo = spec.Vendor, spec.Model, ids
	h.Summary.Hardware = &summary

	// Summary.Config.Product points at a template shared by every host: copy it.
	about := h.Config.Product
	about.Version, about.Build = spec.EsxiVersion, spec.EsxiBuild
	about.FullName = fmt.Sprintf("VMware ESXi %s build-%s", spec.EsxiVersion, spec.EsxiBuild)
	h.Config.Product = about
	h.Summary.Config.Product = &about

	state, err := connectionState(spec.ConnectionState)
	if err != nil {
		return err
	}
	h.Runtime.ConnectionState = state
	h.Runtime.InMaintenanceMode = spec.InMaintenance
	h.knobs = knobs{
		EnterMMDelayS: spec.EnterMMDelayS, EnterMMFault: spec.EnterMMFault,
		ExitMMDelayS: spec.ExitMMDelayS, ExitMMFault: spec.ExitMMFault,
	}
	simulator.Map.Put(h)

	hosts.mu.Lock()
	hosts.byName[spec.Name] = h
	hosts.order = append(hosts.order, spec.Name)
	hosts.mu.Unlock()
	return nil
}

func (h *labHost) labDuration(seconds float64) time.Duration {
	return time.Duration(seconds / h.speed * float64(time.Second))
}

func (h *labHost) settings() knobs {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.knobs
}

// refuse checks the host's state at the start of a maintenance task, like vCenter.
func (h *labHost) refuse(wantInMM bool) (types.BaseMethodFault, string) {
	if h.Runtime.ConnectionState != types.HostSystemConnectionStateConnected {
		return &types.HostNotConnected{}, "The operation is not allowed in the current connection state of the host."
	}
	if h.Runtime.InMaintenanceMode != wantInMM {
		return &types.InvalidState{}, "The operation is not allowed in the current state."
	}
	return nil, ""
}

// EnterMaintenanceModeTask runs asynchronously: delay, optional fault, timeout.
func (h *labHost) EnterMaintenanceModeTask(req *types.EnterMaintenanceMode_Task) soap.HasFault {
	k := h.settings()
	timeout := time.Duration(req.Timeout) * time.Second
	task := h.startTask("enterMaintenanceModeTask", h.labDuration(k.EnterMMDelayS), timeout,
		k.EnterMMFault, func() (types.BaseMethodFault, string) { return h.refuse(false) }, true)
	return &methods.EnterMaintenanceMode_TaskBody{
		Res: &types.EnterMaintenanceMode_TaskResponse{Returnval: task},
	}
}

// ExitMaintenanceModeTask is the mirror of EnterMaintenanceModeTask.
func (h *labHost) ExitMaintenanceModeTask(req *types.ExitMaintenanceMode_Task) soap.HasFault {
	k := h.settings()
	timeout := time.Duration(req.Timeout) * time.Second
	task := h.startTask("exitMaintenanceModeTask", h.labDuration(k.ExitMMDelayS), timeout,
		k.ExitMMFault, func() (types.BaseMethodFault, string) { return h.refuse(true) }, false)
	return &methods.ExitMaintenanceMode_TaskBody{
		Res: &types.ExitMaintenanceMode_TaskResponse{Returnval: task},
	}
}

// setMaintenance changes the flag through the registry so property collectors see it.
func (h *labHost) setMaintenance(in bool) {
	simulator.Map.WithLock(h, func() {
		simulator.Map.Update(h, []types.PropertyChange{{Name: "runtime.inMaintenanceMode", Val: in}})
	})
}

func (h *labHost) setConnection(state types.HostSystemConnectionState) {
	simulator.Map.WithLock(h, func() {
		simulator.Map.Update(h, []types.PropertyChange{{Name: "runtime.connectionState", Val: state}})
	})
}

// scheduleReconnect sets the host connected after d (cancelling an earlier timer).
func (h *labHost) scheduleReconnect(d time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.reconnect != nil {
		h.reconnect.Stop()
		h.reconnect = nil
	}
	if d > 0 {
		h.reconnect = time.AfterFunc(d, func() { h.setConnection(types.HostSystemConnectionStateConnected) })
	}
}
