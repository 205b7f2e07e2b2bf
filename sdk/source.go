//go:build !wasip1

package sdk

import "embed"

// Source holds the SDK's own Go files, so the crowbar binary can hand an
// author the SDK it was built with (crowbar barclamp new writes it beside
// the new barclamp's module). Outside wasip1 this is all the package has.
//
//go:embed abi.go abi_frame.go frame.go host.go http.go json.go node.go sdk.go
var Source embed.FS
