// Package nftprog describes, renders and installs the one nftables table an
// underlay owns in the host namespace, through netlink (google/nftables).
//
// An underlay's table is small (a handful of chains, a map of published
// forwards, a few bookkeeping sets), so it is installed whole: the program
// is rendered to text, its SHA-256 is kept in the comment of the table's
// first rule, and Apply sends nothing when the kernel's table carries the
// same fingerprint; otherwise it deletes and re-creates the table in one
// atomic batch, so packets see either the old table or the new one, never
// a half-built one (NAT bindings live in conntrack and survive it). Sets
// that record what the underlay changed on the host (its bookkeeping) are
// read back with Read, so a restarted process, or Teardown without any
// configuration, knows what to undo.
//
// Rendering of expressions, table families and hooks, and the encoding of
// keys (interface names, ports, concatenations), are internal/nft's, the
// same as for the firewall and the routers' NAT: one printer, one encoder.
package nftprog

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"

	"github.com/nimbo-cloud/nimbo/internal/hostnet"
	"github.com/nimbo-cloud/nimbo/internal/nft"
)

// Table is one nftables table with its sets (and their elements) and chains
// (and their rules), in creation order.
type Table struct {
	Family nftables.TableFamily
	Name   string
	Sets   []*Set
	Chains []*Chain
}

// Set is a named set or map. ID is assigned by AddSet and lets rules refer
// to it within the batch that creates it.
type Set struct {
	ID       uint32
	Name     string
	Comment  string // rendered, not sent
	KeyType  nftables.SetDatatype
	KeyOrder binaryutil.ByteOrder // for `nft list` display only
	DataType nftables.SetDatatype // maps only
	IsMap    bool
	Concat   bool
	Elems    []Elem
}

// Elem is a set element (with its value, for a map) and its readable form.
type Elem struct {
	Key, Val []byte
	Text     string
}

// Chain is a base chain (Type and Hook set) or a regular one.
type Chain struct {
	Name     string
	Type     nftables.ChainType // "" for a regular chain
	Hook     *nftables.ChainHook
	Priority *nftables.ChainPriority
	Rules    []Rule
}

// Rule is a rule's readable form (nft syntax with a comment) and the
// expressions sent to the kernel.
type Rule struct {
	Text  string
	Exprs []expr.Any
}

// AddSet appends s to t, giving it the next set ID, and returns it.
func (t *Table) AddSet(s *Set) *Set {
	s.ID = uint32(len(t.Sets) + 1)
	t.Sets = append(t.Sets, s)
	return s
}

// fpPrefix starts the comment of the table's first rule.
const fpPrefix = "nimbo fp="

// Fingerprint identifies the whole program (its rendering).
func (t *Table) Fingerprint() string {
	sum := sha256.Sum256([]byte(t.Render()))
	return fpPrefix + hex.EncodeToString(sum[:16])
}

// Render prints the table like `nft list table`, with every rule followed by
// the exact expressions sent to the kernel (in the style of `nft
// --debug=netlink`), for golden tests and for readers.
func (t *Table) Render() string {
	var b strings.Builder
	fmt.Fprintf(&b, "table %s %s\n", nft.FamilyName(t.Family), t.Name)
	for _, s := range t.Sets {
		kind, typ := "set", s.KeyType.Name
		if s.IsMap {
			kind, typ = "map", typ+" : "+s.DataType.Name
		}
		fmt.Fprintf(&b, "\t%s %s { type %s }", kind, s.Name, typ)
		if s.Comment != "" {
			fmt.Fprintf(&b, "  # %s", s.Comment)
		}
		b.WriteByte('\n')
		for _, e := range s.Elems {
			fmt.Fprintf(&b, "\t\t%s\n", e.Text)
		}
	}
	for _, c := range t.Chains {
		if c.Hook == nil {
			fmt.Fprintf(&b, "\tchain %s\n", c.Name)
		} else {
			fmt.Fprintf(&b, "\tchain %s { type %s hook %s priority %d; policy accept }\n", c.Name, c.Type, nft.HookName(*c.Hook, t.Family), *c.Priority)
		}
		for _, r := range c.Rules {
			fmt.Fprintf(&b, "\t\t%s\n\t\t\t%s\n", r.Text, nft.DumpExprs(r.Exprs))
		}
	}
	return b.String()
}

// State is what the kernel holds of a table: whether it exists, the
// fingerprint of the program installed, and the keys of the sets asked for.
type State struct {
	Exists      bool
	Fingerprint string
	Keys        map[string][][]byte // set name -> element keys
}

// conn opens a netlink connection inside the namespace for one call; the
// caller closes it (an open socket keeps a deleted namespace alive).
func conn(ns *hostnet.NS) (*nftables.Conn, error) {
	c, err := nftables.New(nftables.WithNetNSFd(ns.Fd()), nftables.AsLasting())
	if err != nil {
		return nil, fmt.Errorf("nftables connection in %s: %w", ns.Path(), err)
	}
	return c, nil
}

func findTable(c *nftables.Conn, family nftables.TableFamily, name string) (*nftables.Table, error) {
	ts, err := c.ListTablesOfFamily(family)
	if err != nil {
		return nil, fmt.Errorf("list %s tables: %w", nft.FamilyName(family), err)
	}
	for _, t := range ts {
		if t.Name == name {
			return t, nil
		}
	}
	return nil, nil
}

// Read returns what the namespace holds of table name in family: whether it
// exists, its fingerprint and the element keys of the named sets (a set
// that is missing reads as empty).
func Read(ns *hostnet.NS, family nftables.TableFamily, name string, sets ...string) (State, error) {
	st := State{Keys: map[string][][]byte{}}
	c, err := conn(ns)
	if err != nil {
		return st, err
	}
	defer c.CloseLasting()
	t, err := findTable(c, family, name)
	if err != nil || t == nil {
		return st, err
	}
	st.Exists = true
	chains, err := c.ListChainsOfTableFamily(family)
	if err != nil {
		return st, fmt.Errorf("list chains of %s: %w", name, err)
	}
	for _, ch := range chains {
		if ch.Table == nil || ch.Table.Name != name {
			continue
		}
		rules, err := c.GetRules(t, ch)
		if err != nil {
			return st, fmt.Errorf("rules of %s/%s: %w", name, ch.Name, err)
		}
		if len(rules) == 0 {
			continue
		}
		if s, ok := userdata.GetString(rules[0].UserData, userdata.TypeComment); ok && strings.HasPrefix(s, fpPrefix) {
			st.Fingerprint = s
			break
		}
	}
	for _, sn := range sets {
		s, err := c.GetSetByName(t, sn)
		if err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			return st, fmt.Errorf("set %s of %s: %w", sn, name, err)
		}
		s.Table = t
		elems, err := c.GetSetElements(s)
		if err != nil {
			return st, fmt.Errorf("elements of %s/%s: %w", name, sn, err)
		}
		for _, e := range elems {
			st.Keys[sn] = append(st.Keys[sn], e.Key)
		}
	}
	return st, nil
}

// Apply makes the kernel hold t, given what Read returned of it: nothing
// is sent when the installed fingerprint is t's; otherwise the table is
// deleted (if it exists) and created again in one atomic batch. It reports
// whether it sent anything.
func Apply(ns *hostnet.NS, t *Table, st State) (bool, error) {
	fp := t.Fingerprint()
	if st.Exists && st.Fingerprint == fp {
		return false, nil
	}
	c, err := conn(ns)
	if err != nil {
		return false, err
	}
	defer c.CloseLasting()
	nt := &nftables.Table{Family: t.Family, Name: t.Name}
	if st.Exists {
		c.DelTable(nt)
	}
	c.AddTable(nt)
	sets := map[string]*nftables.Set{}
	for _, s := range t.Sets {
		ns := &nftables.Set{
			Table: nt, ID: s.ID, Name: s.Name, IsMap: s.IsMap, Concatenation: s.Concat,
			KeyType: s.KeyType, DataType: s.DataType, KeyByteOrder: s.KeyOrder,
		}
		if err := c.AddSet(ns, nil); err != nil {
			return false, fmt.Errorf("set %s: %w", s.Name, err)
		}
		sets[s.Name] = ns
		// Well below the 64 KiB that one element list may take.
		const chunk = 500
		for i := 0; i < len(s.Elems); i += chunk {
			var es []nftables.SetElement
			for _, e := range s.Elems[i:min(i+chunk, len(s.Elems))] {
				es = append(es, nftables.SetElement{Key: e.Key, Val: e.Val})
			}
			if err := c.SetAddElements(ns, es); err != nil {
				return false, fmt.Errorf("elements of %s: %w", s.Name, err)
			}
		}
	}
	// All chains before any rule: a rule may jump to a chain defined later.
	chains := make([]*nftables.Chain, len(t.Chains))
	for i, ch := range t.Chains {
		nc := &nftables.Chain{Name: ch.Name, Table: nt}
		if ch.Hook != nil {
			accept := nftables.ChainPolicyAccept
			nc.Type, nc.Hooknum, nc.Priority, nc.Policy = ch.Type, ch.Hook, ch.Priority, &accept
		}
		chains[i] = c.AddChain(nc)
	}
	first := true
	for i, ch := range t.Chains {
		for _, r := range ch.Rules {
			nr := &nftables.Rule{Table: nt, Chain: chains[i], Exprs: r.Exprs}
			if first {
				nr.UserData = userdata.AppendString(nil, userdata.TypeComment, fp)
				first = false
			}
			c.AddRule(nr)
		}
	}
	if first {
		return false, fmt.Errorf("nftprog: table %s has no rule to carry its fingerprint", t.Name)
	}
	if err := c.Flush(); err != nil {
		return false, fmt.Errorf("install table %s %s: %w", nft.FamilyName(t.Family), t.Name, err)
	}
	return true, nil
}

// Delete removes table name of family from the namespace; it is not an error
// if it is absent.
func Delete(ns *hostnet.NS, family nftables.TableFamily, name string) error {
	c, err := conn(ns)
	if err != nil {
		return err
	}
	defer c.CloseLasting()
	t, err := findTable(c, family, name)
	if err != nil || t == nil {
		return err
	}
	c.DelTable(t)
	if err := c.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("delete table %s %s: %w", nft.FamilyName(family), name, err)
	}
	return nil
}
