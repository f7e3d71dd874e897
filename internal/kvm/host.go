package kvm

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
)

// KVM backend ("vendor") modules, in the order they are reported.
const (
	moduleIntel = "kvm_intel"
	moduleAMD   = "kvm_amd"
	modulePVM   = "kvm_pvm"
)

// hostInfo is what the file system under a root says about KVM on this host.
type hostInfo struct {
	devPath    string // <root>/dev/kvm
	devExists  bool
	devIsChar  bool
	devStatErr error // stat error other than "does not exist"

	miscDev string // contents of /sys/class/misc/kvm/dev ("10:232"), "" if not registered

	modulesKnown bool     // /sys/module or /proc/modules could be read
	kvmCore      bool     // module kvm present
	vendors      []string // present backend modules among kvm_intel, kvm_amd, kvm_pvm

	cpuinfoKnown bool   // /proc/cpuinfo had a flags line
	virtFlag     string // "vmx", "svm" or ""
}

// hasVendor reports whether the named backend module is present.
func (h *hostInfo) hasVendor(name string) bool {
	for _, v := range h.vendors {
		if v == name {
			return true
		}
	}
	return false
}

// hardwareVendor reports whether a hardware backend (kvm_intel or kvm_amd)
// is present.
func (h *hostInfo) hardwareVendor() bool {
	return h.hasVendor(moduleIntel) || h.hasVendor(moduleAMD)
}

// pvmOnly reports whether the only KVM backend present is kvm_pvm.
func (h *hostInfo) pvmOnly() bool {
	return h.hasVendor(modulePVM) && !h.hardwareVendor()
}

// readHostInfo reads /dev, /sys and /proc under root ("" or "/" for the
// real ones).
func readHostInfo(root string) hostInfo {
	h := hostInfo{devPath: rootPath(root, "/dev/kvm")}
	if st, err := os.Stat(h.devPath); err == nil {
		h.devExists = true
		h.devIsChar = st.Mode()&os.ModeCharDevice != 0
	} else if !os.IsNotExist(err) {
		// Exists as far as we can tell, but cannot be examined.
		h.devExists = true
		h.devStatErr = err
	}
	if b, err := os.ReadFile(rootPath(root, "/sys/class/misc/kvm/dev")); err == nil {
		h.miscDev = strings.TrimSpace(string(b))
	} else if _, err := os.Stat(rootPath(root, "/sys/class/misc/kvm")); err == nil {
		h.miscDev = "?"
	}

	loaded := map[string]bool{}
	if ents, err := os.ReadDir(rootPath(root, "/sys/module")); err == nil {
		h.modulesKnown = true
		for _, e := range ents {
			loaded[e.Name()] = true
		}
	}
	if f, err := os.Open(rootPath(root, "/proc/modules")); err == nil {
		h.modulesKnown = true
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if name, _, ok := strings.Cut(sc.Text(), " "); ok {
				loaded[name] = true
			}
		}
		f.Close()
	}
	h.kvmCore = loaded["kvm"]
	for _, m := range []string{moduleIntel, moduleAMD, modulePVM} {
		if loaded[m] {
			h.vendors = append(h.vendors, m)
		}
	}

	h.cpuinfoKnown, h.virtFlag = readVirtFlag(rootPath(root, "/proc/cpuinfo"))
	return h
}

// readVirtFlag looks for the vmx or svm flag in a /proc/cpuinfo file. known
// is false when the file has no flags line at all.
func readVirtFlag(path string) (known bool, flag string) {
	f, err := os.Open(path)
	if err != nil {
		return false, ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok || strings.TrimSpace(key) != "flags" {
			continue
		}
		known = true
		for _, fl := range strings.Fields(val) {
			if fl == "vmx" || fl == "svm" {
				return true, fl
			}
		}
	}
	return known, ""
}

// rootPath joins an absolute path to root ("" means "/").
func rootPath(root, p string) string {
	if root == "" || root == "/" {
		return p
	}
	return filepath.Join(root, p)
}
