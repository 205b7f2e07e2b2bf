package model

import "testing"

func TestValidFQDN(t *testing.T) {
	cases := []struct {
		name string
		ok   bool
	}{
		{"newtest.cr0wbar.com", true},
		{"d52-54-05-3f-00-00.smoke.test", true},
		{"78e3be198029.smoke.test", true}, // the seed's discovered node: a dot keeps it from looking like an id
		{"10.0.0.1", true},
		{"", false},
		{"localhost", false},
		{"-a.example.com", false},
		{"a-.example.com", false},
		{"a..example.com", false},
		{"a_b.example.com", false},
		{"a.example.com.", false},
		{"a/b.example.com", false},
	}
	for _, c := range cases {
		if err := ValidFQDN("name", c.name); (err == nil) != c.ok {
			t.Errorf("ValidFQDN(%q) = %v, want ok=%v", c.name, err, c.ok)
		}
	}
}

func TestValidName(t *testing.T) {
	cases := []struct {
		name string
		ok   bool
	}{
		{"test1", true},
		{"crowbar-managed-node", true},
		{"provisioner-target_os", true},
		{"_private", true},
		{"1test", false},
		{"", false},
		{"has space", false},
		{"a/b", false},
		{"-dash", false},
	}
	for _, c := range cases {
		if err := ValidName("name", c.name); (err == nil) != c.ok {
			t.Errorf("ValidName(%q) = %v, want ok=%v", c.name, err, c.ok)
		}
	}
}

func TestNodeNormalizeDerivesAlias(t *testing.T) {
	n := &Node{Name: "NewTest.Cr0wbar.com"}
	n.Defaults()
	n.Normalize()
	if n.Name != "newtest.cr0wbar.com" || n.Alias != "newtest" || n.Order != 10000 || n.Bootenv != "sledgehammer" || n.DeploymentID != SystemDeploymentID {
		t.Fatalf("after Defaults+Normalize: %+v", n)
	}
}
