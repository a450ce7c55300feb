// SPDX-License-Identifier: GPL-2.0-only
/* Counts the map entries one process writes from user space: every element
 * of BPF_MAP_UPDATE_ELEM and of the batch updates goes through
 * bpf_map_update_value; single deletes through map_delete_elem. The
 * benchmark reads the counts around an apply to report what it wrote. */
#include <linux/bpf.h>
#include <linux/types.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

const volatile __u32 target_tgid = 0;
__u64 updates = 0;
__u64 deletes = 0;

SEC("kprobe/bpf_map_update_value")
int count_update(void *ctx)
{
	if ((bpf_get_current_pid_tgid() >> 32) == target_tgid)
		__sync_fetch_and_add(&updates, 1);
	return 0;
}

SEC("kprobe/map_delete_elem")
int count_delete(void *ctx)
{
	if ((bpf_get_current_pid_tgid() >> 32) == target_tgid)
		__sync_fetch_and_add(&deletes, 1);
	return 0;
}
