/* Namespace helpers shared by the Node addon and the pause program.
 * Every function returns 0 on success or a negative errno; none of them leaves the
 * calling thread in a different network namespace than it entered with. */
#ifndef PODNET_NSUTIL_H
#define PODNET_NSUTIL_H

#ifdef __cplusplus
extern "C" {
#endif

/* Make `dir` (e.g. /run/netns) exist and be a shared mount point, as `ip netns add` does,
 * so that bind mounts made under it propagate to every mount namespace. */
int pn_prepare_netns_dir(const char *dir);

/* Bind-mount the calling thread's current network namespace at `path` (created, must not exist).
 * Equivalent to the second half of `ip netns add NAME`. */
int pn_pin_current_netns(const char *path);

/* Create a new network namespace and pin it at `path` without moving the calling thread
 * for longer than the call: unshare(CLONE_NEWNET), bind mount, setns back.
 * Equivalent to `ip netns add NAME` with path = /run/netns/NAME. */
int pn_create_netns(const char *path);

/* Unpin a namespace: lazy unmount and unlink. Equivalent to `ip netns delete NAME`.
 * Returns -ENOENT when nothing is at `path`. */
int pn_delete_netns(const char *path);

/* Open the calling thread's own network namespace (O_RDONLY|O_CLOEXEC). Returns fd or -errno. */
int pn_open_thread_netns(void);

#ifdef __cplusplus
}
#endif
#endif
