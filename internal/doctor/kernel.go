package doctor

import (
	"bufio"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// support is what the kernel's files say about one feature.
type support int

const (
	supportUnknown  support = iota // no source could be read
	supportAbsent                  // the sources say the kernel lacks it
	supportLoadable                // a module that is installed but not loaded
	supportLoaded                  // a module that is loaded
	supportBuiltin                 // built into the kernel
)

// evidence is a support level with the source it came from, in words.
type evidence struct {
	support support
	detail  string // e.g. "built in (CONFIG_VETH=y)", "module veth loaded"
}

// present reports whether the feature is available (possibly after the
// kernel autoloads the module).
func (e evidence) present() bool {
	return e.support >= supportLoadable
}

// kernelFacts caches what the kernel's files say, under a root.
type kernelFacts struct {
	root    string
	release string

	sysModules map[string]bool // /sys/module entries; nil if unreadable
	procMods   map[string]bool // /proc/modules; nil if unreadable
	builtin    map[string]bool // module names in modules.builtin; nil if unreadable
	installed  map[string]bool // module names in modules.dep; nil if unreadable
	config     map[string]string
	configFrom string // file the config came from
}

// readKernelFacts reads /sys/module, /proc/modules, /lib/modules/<release>
// and the kernel config (/proc/config.gz or /boot/config-<release>).
func readKernelFacts(root string) *kernelFacts {
	k := &kernelFacts{root: root}
	if b, err := os.ReadFile(rootPath(root, "/proc/sys/kernel/osrelease")); err == nil {
		k.release = strings.TrimSpace(string(b))
	}
	if ents, err := os.ReadDir(rootPath(root, "/sys/module")); err == nil {
		k.sysModules = map[string]bool{}
		for _, e := range ents {
			k.sysModules[e.Name()] = true
		}
	}
	if b, err := os.ReadFile(rootPath(root, "/proc/modules")); err == nil {
		k.procMods = map[string]bool{}
		for _, line := range strings.Split(string(b), "\n") {
			if name, _, ok := strings.Cut(line, " "); ok {
				k.procMods[name] = true
			}
		}
	}
	if k.release != "" {
		dir := rootPath(root, filepath.Join("/lib/modules", k.release))
		k.builtin = readModuleList(filepath.Join(dir, "modules.builtin"))
		k.installed = readModuleList(filepath.Join(dir, "modules.dep"))
	}
	k.config, k.configFrom = readKernelConfig(root, k.release)
	return k
}

// readModuleList reads module names from modules.builtin or modules.dep
// ("kernel/net/bridge/bridge.ko[.xz]: deps..."). It returns nil if the
// file cannot be read.
func readModuleList(path string) map[string]bool {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	names := map[string]bool{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		p, _, _ := strings.Cut(sc.Text(), ":")
		if name := moduleName(p); name != "" {
			names[name] = true
		}
	}
	return names
}

// moduleName turns "kernel/net/bridge/bridge.ko.zst" into "bridge", with
// dashes normalised to underscores as the kernel does.
func moduleName(p string) string {
	base := filepath.Base(strings.TrimSpace(p))
	i := strings.Index(base, ".ko")
	if i <= 0 {
		return ""
	}
	return strings.ReplaceAll(base[:i], "-", "_")
}

// readKernelConfig reads CONFIG_* settings from /proc/config.gz or
// /boot/config-<release>. It returns nil if neither can be read.
func readKernelConfig(root, release string) (map[string]string, string) {
	parse := func(r io.Reader) map[string]string {
		cfg := map[string]string{}
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			line := sc.Text()
			if strings.HasPrefix(line, "# CONFIG_") && strings.HasSuffix(line, " is not set") {
				cfg[strings.TrimSuffix(strings.TrimPrefix(line, "# "), " is not set")] = "n"
				continue
			}
			if k, v, ok := strings.Cut(line, "="); ok && strings.HasPrefix(k, "CONFIG_") {
				cfg[k] = v
			}
		}
		if sc.Err() != nil || len(cfg) == 0 {
			return nil
		}
		return cfg
	}
	gzPath := rootPath(root, "/proc/config.gz")
	if f, err := os.Open(gzPath); err == nil {
		defer f.Close()
		if zr, err := gzip.NewReader(f); err == nil {
			if cfg := parse(zr); cfg != nil {
				return cfg, "/proc/config.gz"
			}
		}
	}
	if release != "" {
		p := "/boot/config-" + release
		if f, err := os.Open(rootPath(root, p)); err == nil {
			defer f.Close()
			if cfg := parse(f); cfg != nil {
				return cfg, p
			}
		}
	}
	return nil, ""
}

// feature says whether the kernel has a feature provided by module (may be
// "" for features that cannot be modules) and configured by config.
func (k *kernelFacts) feature(module, config string) evidence {
	if module != "" {
		if k.sysModules[module] {
			// Loadable modules have an initstate file; built-in ones that
			// merely have parameters do not.
			if _, err := os.Stat(rootPath(k.root, filepath.Join("/sys/module", module, "initstate"))); err == nil {
				return evidence{supportLoaded, "module " + module + " loaded"}
			}
			return evidence{supportBuiltin, "built in"}
		}
		if k.procMods[module] {
			return evidence{supportLoaded, "module " + module + " loaded"}
		}
		if k.builtin[module] {
			return evidence{supportBuiltin, "built in (modules.builtin)"}
		}
	}
	if v, ok := k.config[config]; ok {
		switch v {
		case "y":
			return evidence{supportBuiltin, "built in (" + config + "=y)"}
		case "m":
			if k.installed == nil || k.installed[module] {
				return evidence{supportLoadable, "module " + module + " available (" + config + "=m)"}
			}
			return evidence{supportAbsent, config + "=m but " + module + ".ko is not installed under /lib/modules/" + k.release}
		default:
			return evidence{supportAbsent, config + " is not set in " + k.configFrom}
		}
	}
	if module != "" && k.installed[module] {
		return evidence{supportLoadable, "module " + module + " available (modules.dep)"}
	}
	if module != "" && k.installed != nil {
		return evidence{supportAbsent, "module " + module + " is neither loaded nor installed"}
	}
	return evidence{supportUnknown, "could not tell from /sys/module, /proc/modules, /lib/modules or the kernel config"}
}

// rootPath joins an absolute path to root ("" means "/").
func rootPath(root, p string) string {
	if root == "" || root == "/" {
		return p
	}
	return filepath.Join(root, p)
}
