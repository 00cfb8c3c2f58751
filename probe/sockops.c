//go:build ignore

// sock_ops probe of homing: reports the TCP sessions this host owns.
//
// Attached to a cgroup v2, it sees every TCP socket of the processes in that cgroup
// (a socket belongs to the cgroup of the process that created it; an accepted
// socket to the cgroup of its listener).
//
//   PASSIVE_ESTABLISHED_CB  local address in vip4/vip6 (LPM tries, filled from Go)
//                           and, when netns_cookie != 0, socket in that netns:
//                           mark the socket in `added` (socket-local storage),
//                           emit EVENT_ADD, then enable STATE_CB on the socket.
//   TIMEOUT_INIT            on a request socket (a SYN to a listener), local address
//                           a VIP: emit EVENT_TENTATIVE (the handshake is in flight;
//                           the control plane claims the session for a short time so
//                           that a rehashed final ACK reaches this host). No mark:
//                           an unconfirmed tentative claim expires in the control plane.
//   STATE_CB                new state TCP_CLOSE, socket marked in `added`:
//                           unmark it and emit EVENT_DELETE.
//
// The mark makes the DELETE this program's own: STATE_CB is a flag of the socket,
// and every sock_ops program of the cgroup (another homing probe among them) sees
// the state changes of a socket on which any of them enabled it. Each loaded probe
// has its own `added` map, so it reports the close of exactly the sockets it added.
//
// Every path out of a connection ends in exactly one transition to TCP_CLOSE:
// ESTABLISHED -> FIN_WAIT1 -> FIN_WAIT2/CLOSING -> TIME_WAIT (the full socket goes
// to TCP_CLOSE when its timewait socket takes over), ESTABLISHED -> CLOSE_WAIT ->
// LAST_ACK -> CLOSE, and a reset or abort straight to CLOSE. The intermediate
// states emit nothing, so each ADD is followed by exactly one DELETE. The DELETE
// comes when the full socket dies: a session in TIME_WAIT is already deleted
// (the control plane lingers before it gossips the delete).
//
// A socket is marked only when its ADD reached the ring buffer, so a DELETE is
// never sent for a session whose ADD was lost. Failed ring writes (and failures to
// create a mark) are counted in `lost` (one per-CPU counter; Go sums the CPUs).
// STATE_CB stays enabled once set: another program may rely on it, and the socket
// is closing anyway.
//
// IPv4 connections accepted on a dual-stack IPv6 socket (::ffff:a.b.c.d) are
// reported as IPv4.
//
// Byte order: remote_ip4/local_ip4/remote_ip6/local_ip6 are network order;
// local_port is host order; remote_port is a 32-bit field whose network-order
// 16-bit port sits in the upper half of the word on little-endian hosts (the
// kernel loads skc_dport and shifts it left by 16), so bpf_ntohl() of it is the
// port. The code also accepts the port in the lower half, should a kernel ever
// load it unshifted: a port of an established socket is never zero.

#include <linux/bpf.h>
#include <linux/types.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define TCP_CLOSE 7

// Event kinds; keep in sync with probe/event.go.
#define EVENT_ADD 1
#define EVENT_DELETE 2
#define EVENT_TENTATIVE 3 // a request socket: SYN received on a VIP, SYN-ACK about to go

// Tunables.
#define MAX_VIPS 4096 // prefixes per family

// struct event is the ring-buffer record; layout documented in probe/event.go.
struct event {
	__u8 kind;
	__u8 family; // 4 or 6
	__u8 proto;  // IPPROTO_TCP
	__u8 pad;
	__be16 src_port; // client (remote) port, network order
	__be16 dst_port; // VIP (local) port, network order
	__u64 cookie;    // socket cookie, as in sock_diag
	__u8 src[16];    // client address; IPv4 in the first 4 bytes
	__u8 dst[16];    // VIP address; IPv4 in the first 4 bytes
};

struct vip4_key {
	__u32 prefixlen;
	__u32 addr; // network order
};

struct vip6_key {
	__u32 prefixlen;
	__u32 addr[4]; // network order
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, MAX_VIPS);
	__type(key, struct vip4_key);
	__type(value, __u8);
} vip4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, MAX_VIPS);
	__type(key, struct vip6_key);
	__type(value, __u8);
} vip6 SEC(".maps");

// Size set from Go (Config.RingBytes) before load.
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} events SEC(".maps");

// The sockets this probe reported as added; storage lives and dies with the socket.
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u8);
} added SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} lost SEC(".maps");

// Network namespace filter: 0 reports sockets of every netns, else only those of
// the netns with this cookie. Set from Go before load.
volatile const __u64 netns_cookie = 0;

// Keeps struct event in the BTF, for bpf2go's -type event (layout checked in Go).
const struct event *unused_event __attribute__((unused));

#define CTX_U32(field) (*(volatile __u32 *)&(field))

static __always_inline void count_lost(void)
{
	__u32 zero = 0;
	__u64 *n = bpf_map_lookup_elem(&lost, &zero);

	if (n)
		*n += 1;
}

static __always_inline __be16 remote_port(const struct bpf_sock_ops *skops)
{
	__u32 p = bpf_ntohl(skops->remote_port);

	if ((p & 0xffff) == 0)
		p >>= 16;
	return bpf_htons((__u16)p);
}

static __always_inline int is_v4_mapped(const __u32 a[4])
{
	return a[0] == 0 && a[1] == 0 && a[2] == bpf_htonl(0x0000ffff);
}

// fill sets e's family and addresses from skops, with IPv4-mapped addresses turned
// into IPv4, and reports whether the local address is a VIP.
static __always_inline int fill(struct bpf_sock_ops *skops, struct event *e)
{
	__u32 family = skops->family;

	if (family == AF_INET6) {
		__u32 l[4], r[4];

		// One 32-bit load per word: the verifier refuses wider context loads,
		// which clang would otherwise merge these into.
		l[0] = CTX_U32(skops->local_ip6[0]);
		l[1] = CTX_U32(skops->local_ip6[1]);
		l[2] = CTX_U32(skops->local_ip6[2]);
		l[3] = CTX_U32(skops->local_ip6[3]);
		r[0] = CTX_U32(skops->remote_ip6[0]);
		r[1] = CTX_U32(skops->remote_ip6[1]);
		r[2] = CTX_U32(skops->remote_ip6[2]);
		r[3] = CTX_U32(skops->remote_ip6[3]);
		if (is_v4_mapped(l)) {
			struct vip4_key k = {.prefixlen = 32, .addr = l[3]};

			e->family = 4;
			__builtin_memcpy(e->dst, &l[3], 4);
			__builtin_memcpy(e->src, &r[3], 4);
			return bpf_map_lookup_elem(&vip4, &k) != NULL;
		}
		struct vip6_key k = {.prefixlen = 128};

		__builtin_memcpy(k.addr, l, 16);
		e->family = 6;
		__builtin_memcpy(e->dst, l, 16);
		__builtin_memcpy(e->src, r, 16);
		return bpf_map_lookup_elem(&vip6, &k) != NULL;
	}
	if (family == AF_INET) {
		__u32 l = skops->local_ip4;
		__u32 r = skops->remote_ip4;
		struct vip4_key k = {.prefixlen = 32, .addr = l};

		e->family = 4;
		__builtin_memcpy(e->dst, &l, 4);
		__builtin_memcpy(e->src, &r, 4);
		return bpf_map_lookup_elem(&vip4, &k) != NULL;
	}
	return 0;
}

// emit writes an event for skops to the ring buffer. An ADD needs a VIP as local
// address; a DELETE does not (its socket was checked at ADD time, and a VIP removed
// since must not leave its sessions behind).
static __always_inline int emit(struct bpf_sock_ops *skops, __u8 kind)
{
	struct event e = {};

	if (!fill(skops, &e) && kind != EVENT_DELETE)
		return -1;
	e.kind = kind;
	e.proto = IPPROTO_TCP;
	e.src_port = remote_port(skops);
	e.dst_port = bpf_htons((__u16)skops->local_port);
	e.cookie = bpf_get_socket_cookie(skops);
	if (bpf_ringbuf_output(&events, &e, sizeof(e), 0) != 0) {
		count_lost();
		return -1;
	}
	return 0;
}

SEC("sockops")
int homing_sockops(struct bpf_sock_ops *skops)
{
	struct bpf_sock *sk;

	switch (skops->op) {
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
		if (netns_cookie != 0 && bpf_get_netns_cookie(skops) != netns_cookie)
			break;
		sk = skops->sk;
		if (!sk)
			break;
		if (!bpf_sk_storage_get(&added, sk, 0, BPF_SK_STORAGE_GET_F_CREATE)) {
			count_lost();
			break;
		}
		if (emit(skops, EVENT_ADD) != 0) {
			bpf_sk_storage_delete(&added, sk);
			break;
		}
		bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_STATE_CB_FLAG);
		break;
	case BPF_SOCK_OPS_TIMEOUT_INIT:
		// Called with the request socket when a listener takes a SYN (the SYN-ACK
		// timeout), and with full sockets for active opens. reply stays 0: the
		// kernel keeps its default timeout.
		if (skops->is_fullsock)
			break;
		if (netns_cookie != 0 && bpf_get_netns_cookie(skops) != netns_cookie)
			break;
		emit(skops, EVENT_TENTATIVE);
		break;
	case BPF_SOCK_OPS_STATE_CB:
		// args[0] is the old state, args[1] the new one.
		if (skops->args[1] != TCP_CLOSE)
			break;
		sk = skops->sk;
		if (!sk || !bpf_sk_storage_get(&added, sk, 0, 0))
			break;
		bpf_sk_storage_delete(&added, sk);
		emit(skops, EVENT_DELETE);
		break;
	}
	return 1;
}

// The kernel offers some helpers to GPL-compatible programs only.
char _license[] SEC("license") = "Dual MIT/GPL";
