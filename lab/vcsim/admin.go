package main

// The lab's admin API: read and change hosts while the simulator runs
// (a host that stops responding during a reboot, slow maintenance mode, ...).

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/vmware/govmomi/simulator"
)

// hostView is what GET /lab/hosts returns per host.
type hostView struct {
	Name            string `json:"name"`
	Moid            string `json:"moid"`
	ConnectionState string `json:"connection_state"`
	InMaintenance   bool   `json:"in_maintenance"`
	knobs
}

// hostChange is the body of POST /lab/hosts/{name}; absent fields keep their value.
type hostChange struct {
	ConnectionState *string  `json:"connection_state"`
	ReconnectAfterS *float64 `json:"reconnect_after_s"`
	InMaintenance   *bool    `json:"in_maintenance"`
	EnterMMDelayS   *float64 `json:"enter_mm_delay_s"`
	EnterMMFault    *string  `json:"enter_mm_fault"`
	ExitMMDelayS    *float64 `json:"exit_mm_delay_s"`
	ExitMMFault     *string  `json:"exit_mm_fault"`
}

func (h *labHost) view() hostView {
	v := hostView{Name: h.Name, Moid: h.Self.Value, knobs: h.settings()}
	simulator.Map.WithLock(h, func() {
		v.ConnectionState = string(h.Runtime.ConnectionState)
		v.InMaintenance = h.Runtime.InMaintenanceMode
	})
	return v
}

func writeJSON(w http.ResponseWriter, status int, body interface{}) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

func fail(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

func (c *hostChange) validate() string {
	if c.ConnectionState != nil {
		if _, err := connectionState(*c.ConnectionState); err != nil {
			return err.Error()
		}
	}
	for _, name := range []*string{c.EnterMMFault, c.ExitMMFault} {
		if name != nil && *name != "" && methodFault(*name, "") == nil {
			return "unknown fault " + *name
		}
	}
	for _, d := range []*float64{c.ReconnectAfterS, c.EnterMMDelayS, c.ExitMMDelayS} {
		if d != nil && *d < 0 {
			return "durations must not be negative"
		}
	}
	return ""
}

func (h *labHost) apply(c *hostChange) {
	h.mu.Lock()
	if c.EnterMMDelayS != nil {
		h.knobs.EnterMMDelayS = *c.EnterMMDelayS
	}
	if c.EnterMMFault != nil {
		h.knobs.EnterMMFault = *c.EnterMMFault
	}
	if c.ExitMMDelayS != nil {
		h.knobs.ExitMMDelayS = *c.ExitMMDelayS
	}
	if c.ExitMMFault != nil {
		h.knobs.ExitMMFault = *c.ExitMMFault
	}
	h.mu.Unlock()
	if c.InMaintenance != nil {
		h.setMaintenance(*c.InMaintenance)
	}
	if c.ConnectionState != nil {
		state, _ := connectionState(*c.ConnectionState)
		h.scheduleReconnect(0)
		h.setConnection(state)
	}
	if c.ReconnectAfterS != nil {
		h.scheduleReconnect(h.labDuration(*c.ReconnectAfterS))
	}
}

func registerAdmin(svc *simulator.Service, hosts *labHosts) {
	svc.HandleFunc("/lab/hosts", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			fail(w, http.StatusMethodNotAllowed, "GET only")
			return
		}
		views := []hostView{}
		for _, h := range hosts.all() {
			views = append(views, h.view())
		}
		writeJSON(w, http.StatusOK, views)
	})
	svc.HandleFunc("/lab/hosts/", func(w http.ResponseWriter, r *http.Request) {
		h := hosts.get(strings.TrimPrefix(r.URL.Path, "/lab/hosts/"))
		if h == nil {
			fail(w, http.StatusNotFound, "no such host")
			return
		}
		switch r.Method {
		case http.MethodGet:
			writeJSON(w, http.StatusOK, h.view())
		case http.MethodPost:
			change := new(hostChange)
			dec := json.NewDecoder(r.Body)
			dec.DisallowUnknownFields()
			if err := dec.Decode(change); err != nil {
				fail(w, http.StatusBadRequest, err.Error())
				return
			}
			if msg := change.validate(); msg != "" {
				fail(w, http.StatusBadRequest, msg)
				return
			}
			h.apply(change)
			writeJSON(w, http.StatusOK, h.view())
		default:
			fail(w, http.StatusMethodNotAllowed, "GET or POST")
		}
	})
}
