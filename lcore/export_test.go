//go:build harness

package lcore

// SetFastPaths is setFastPaths for the external tests.
var SetFastPaths = setFastPaths
