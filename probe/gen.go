package probe

// The x86_64 include directory holds <asm/types.h> for <linux/types.h>.
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target bpfel -type event sockops sockops.c -- -I/usr/include/x86_64-linux-gnu
