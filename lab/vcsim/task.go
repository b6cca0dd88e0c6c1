package main

// Tasks that take time: vcsim's own tasks complete inside the SOAP call.

import (
	"sync"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// labTask embeds simulator.Task by value (see labHost) and adds CancelTask,
// which vcsim 0.24 does not implement.
type labTask struct {
	simulator.Task

	cancel chan struct{}
	mu     sync.Mutex // guards done
	done   bool
}

// CancelTask asks a running task to stop; it then fails with RequestCanceled.
func (t *labTask) CancelTask(req *types.CancelTask) soap.HasFault {
	body := new(methods.CancelTaskBody)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.done {
		body.Fault_ = simulator.Fault("The operation is not allowed in the current state.", &types.InvalidState{})
		return body
	}
	select {
	case <-t.cancel:
	default:
		close(t.cancel)
	}
	body.Res = new(types.CancelTaskResponse)
	return body
}

// faultMessages are vCenter's messages for the faults a spec may inject.
var faultMessages = map[string]string{
	"InvalidState":               "The operation is not allowed in the current state.",
	"Timedout":                   "Operation timed out.",
	"TaskInProgress":             "Another task is already in progress.",
	"RequestCanceled":            "The task was canceled by a user.",
	"HostConfigFault":            "An error occurred during host configuration.",
	"InsufficientResourcesFault": "Insufficient resources to satisfy configured failover level for vSphere HA.",
	"SystemError":                "A general system error occurred: injected by the lab",
	"NoPermission":               "Permission to perform this operation was denied.",
}

// methodFault builds the named fault (nil for an unknown name).
func methodFault(name, reason string) types.BaseMethodFault {
	switch name {
	case "InvalidState":
		return &types.InvalidState{}
	case "Timedout":
		return &types.Timedout{}
	case "TaskInProgress":
		return &types.TaskInProgress{}
	case "RequestCanceled":
		return &types.RequestCanceled{}
	case "HostConfigFault":
		return &types.HostConfigFault{}
	case "InsufficientResourcesFault":
		return &types.InsufficientResourcesFault{}
	case "SystemError":
		return &types.SystemError{Reason: reason}
	case "NoPermission":
		return &types.NoPermission{PrivilegeId: "Host.Config.Maintenance"}
	}
	return nil
}

// startTask creates a running task on h that, after delay, fails with the
// injected fault or applies the change. refuse is checked first (state
// preconditions fail the task at once); a vSphere timeout shorter than the
// delay fails it with Timedout; CancelTask fails it with RequestCanceled.
func (h *labHost) startTask(
	name string, delay, timeout time.Duration, inject string,
	refuse func() (types.BaseMethodFault, string), enter bool,
) types.ManagedObjectReference {
	t := simulator.CreateTask(h, name, nil)
	lt := &labTask{Task: *t, cancel: make(chan struct{})}
	lt.Info.EntityName = h.Name
	lt.Info.Cancelable = true
	simulator.Map.Put(lt)
	simulator.Map.Update(lt, []types.PropertyChange{
		{Name: "info.startTime", Val: time.Now()},
		{Name: "info.state", Val: types.TaskInfoStateRunning},
		{Name: "info.progress", Val: int32(0)},
	})
	if fault, msg := refuse(); fault != nil {
		lt.finish(fault, msg)
		return lt.Self
	}
	go func() {
		timer := time.NewTimer(delay)
		defer timer.Stop()
		var expired <-chan time.Time
		if timeout > 0 && timeout < delay {
			expired = time.After(timeout)
		}
		select {
		case <-timer.C:
		case <-expired:
			lt.finish(&types.Timedout{}, faultMessages["Timedout"])
			return
		case <-lt.cancel:
			lt.finish(&types.RequestCanceled{}, faultMessages["RequestCanceled"])
			return
		}
		if inject != "" {
			lt.finish(methodFault(inject, "injected by the lab"), faultMessages[inject])
			return
		}
		h.setMaintenance(enter)
		lt.finish(nil, "")
	}()
	return lt.Self
}

func (t *labTask) finish(fault types.BaseMethodFault, msg string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.done {
		return
	}
	t.done = true
	state := types.TaskInfoStateSuccess
	var failure interface{}
	if fault != nil {
		state = types.TaskInfoStateError
		failure = types.LocalizedMethodFault{Fault: fault, LocalizedMessage: msg}
	}
	simulator.Map.Update(t, []types.PropertyChange{
		{Name: "info.completeTime", Val: time.Now()},
		{Name: "info.progress", Val: int32(100)},
		{Name: "info.state", Val: state},
		{Name: "info.error", Val: failure},
	})
}
