module libmxgw.org/mxgw/examples

go 1.19

require libmxgw.org/mxgw v0.0.0

// The binding is not published: use the tree (or an installed copy, see
// docs/go.md).
replace libmxgw.org/mxgw => ../../bindings/go
