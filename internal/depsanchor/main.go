package main
import (
 _ "github.com/cilium/ebpf"
 _ "github.com/cilium/ebpf/ringbuf"
 _ "github.com/cilium/ebpf/link"
 _ "github.com/google/gopacket"
 _ "github.com/google/gopacket/layers"
 _ "github.com/google/gopacket/pcapgo"
 _ "github.com/prometheus/client_golang/prometheus"
 _ "github.com/BurntSushi/toml"
 _ "github.com/vishvananda/netlink"
 _ "github.com/vishvananda/netns"
 _ "golang.org/x/net/ipv4"
 _ "golang.org/x/net/ipv6"
 _ "golang.org/x/sys/unix"
)
func main(){}
