package bench

import "syscall"

// childAttr makes a bench killed mid-run take its children along.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
