package model

import (
	"regexp"
	"strings"
	"unicode/utf8"
)

// Object is what every stored resource satisfies.
type Object interface {
	GetID() int64
}

// Defaulter fills in the defaults of a new object before it is validated.
type Defaulter interface{ Defaults() }

// Normalizer derives fields (such as a node's alias) from others; it runs
// before every validation.
type Normalizer interface{ Normalize() }

// Validator checks the rules of one object on its own (uniqueness and
// references are checked by the store).
type Validator interface{ Validate() error }

var (
	nameRe  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.:-]*$`)
	labelRe = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)
)

// ValidName checks a natural-key name: it may not be empty, may not start
// with a digit (so it can never be mistaken for an id) and uses only
// letters, digits and . _ : - so it is safe in a URL path.
func ValidName(field, name string) error {
	switch {
	case name == "":
		return Invalid(field, "is required")
	case len(name) > 255:
		return Invalid(field, "may not be longer than 255 characters")
	case name[0] >= '0' && name[0] <= '9':
		return Invalid(field, "'%s' may not start with a digit", name)
	case !nameRe.MatchString(name):
		return Invalid(field, "'%s' may contain only letters, digits and . _ : - and must start with a letter or _", name)
	}
	return nil
}

// ValidFQDN checks a node name: a fully qualified domain name of at least
// two labels. Labels may start with a digit (RFC 1123; the seed's
// discovered nodes are named 78e3be198029.smoke.test): a name with a dot
// can never be mistaken for a numeric id.
func ValidFQDN(field, name string) error {
	switch {
	case name == "":
		return Invalid(field, "is required")
	case !utf8.ValidString(name) || len(name) > 253:
		return Invalid(field, "'%s' is not a valid domain name (at most 253 characters)", name)
	}
	labels := strings.Split(name, ".")
	if len(labels) < 2 {
		return Invalid(field, "'%s' must be a fully qualified domain name such as host.example.com", name)
	}
	for _, l := range labels {
		if len(l) > 63 || !labelRe.MatchString(l) {
			return Invalid(field, "'%s' is not a valid domain name: label '%s' must be 1-63 letters, digits or hyphens, not starting or ending with a hyphen", name, l)
		}
	}
	return nil
}

// Defaults sets what OpenCrowbar gave a new node.
func (n *Node) Defaults() {
	if n.Order == 0 {
		n.Order = 10000
	}
	if n.Bootenv == "" {
		n.Bootenv = "sledgehammer"
	}
	if n.DeploymentID == 0 {
		n.DeploymentID = SystemDeploymentID
	}
}

// Normalize lower-cases the name and derives the alias from its first label.
func (n *Node) Normalize() {
	n.Name = strings.ToLower(n.Name)
	n.Alias, _, _ = strings.Cut(n.Name, ".")
}

// Validate checks the node's own fields.
func (n *Node) Validate() error {
	if err := ValidFQDN("name", n.Name); err != nil {
		return err
	}
	if n.Bootenv != "" && !nameRe.MatchString(n.Bootenv) {
		return Invalid("bootenv", "'%s' is not a valid boot environment name", n.Bootenv)
	}
	return nil
}

// Defaults gives a new deployment the system deployment as parent.
func (d *Deployment) Defaults() {
	if d.ParentID == nil && !d.System {
		id := int64(SystemDeploymentID)
		d.ParentID = &id
	}
}

// Validate checks the deployment's own fields.
func (d *Deployment) Validate() error {
	if err := ValidName("name", d.Name); err != nil {
		return err
	}
	if d.ParentID != nil && *d.ParentID == d.ID {
		return Invalid("parent_id", "may not name the deployment itself")
	}
	return nil
}

// Defaults makes a new jig active.
func (j *Jig) Defaults() {
	if j.Order == 0 {
		j.Order = 10000
	}
}

// Validate checks the jig's own fields.
func (j *Jig) Validate() error { return ValidName("name", j.Name) }

// Defaults files a new group under "ui", as OpenCrowbar did.
func (g *Group) Defaults() {
	if g.Category == "" {
		g.Category = "ui"
	}
	if g.Order == 0 {
		g.Order = 10000
	}
}

// Validate checks the group's own fields.
func (g *Group) Validate() error {
	if err := ValidName("name", g.Name); err != nil {
		return err
	}
	switch g.Category {
	case "ui", "rack", "tag":
		return nil
	}
	return Invalid("category", "'%s' must be one of ui, rack, tag", g.Category)
}

// Defaults gives a new user the least powerful role.
func (u *User) Defaults() {
	if u.Role == "" {
		u.Role = "reader"
	}
}

// Normalize derives admin from the role.
func (u *User) Normalize() { u.Admin = u.Role == "admin" }

// Validate checks the user's own fields.
func (u *User) Validate() error {
	if err := ValidName("username", u.Username); err != nil {
		return err
	}
	switch u.Role {
	case "admin", "operator", "reader":
	default:
		return Invalid("role", "'%s' must be one of admin, operator, reader", u.Role)
	}
	if u.Email != "" && (!strings.Contains(u.Email, "@") || strings.ContainsAny(u.Email, " \t\n")) {
		return Invalid("email", "'%s' is not an email address", u.Email)
	}
	if u.Password != "" && len(u.Password) < 8 {
		return Invalid("password", "must be at least 8 characters")
	}
	if strings.ContainsRune(u.Username, ':') {
		return Invalid("username", "may not contain ':' (it separates user and password in the install key)")
	}
	return nil
}
